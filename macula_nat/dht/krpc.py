"""Sans-IO KRPC codec: BEP 5 messages, BEP 44 get/put, BEP 43 read-only flag, BEP 32 IPv6.

Every message is a frozen value; `encode` turns one into a bencoded dictionary and `decode`
turns any bytes back, so ``decode(encode(m)) == m``. `decode` raises only `MalformedMessage`.
Unknown keys are ignored (forward compatibility, BEP 5); known keys of the wrong type or size
make the message malformed. Empty ``nodes``/``nodes6``/``values`` are the same as absent ones.
Only canonical bencoding is accepted (sorted keys, no leading zeros, nothing trailing), which is
what libtorrent and other clients send, and it keeps BEP 44 values verbatim.

Top-level keys: ``t`` transaction id, ``y`` kind, ``v`` client version (BEP 5 convention),
``ro`` read-only sender (BEP 43, queries only), ``ip`` the requester's address as the responder
saw it (BEP 42, responses only).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, TypeAlias

import attrs

from . import bencoding
from .compact import (
    Address,
    NodeInfo,
    check_address,
    decode_nodes,
    decode_nodes6,
    decode_peer,
    encode_nodes,
    encode_nodes6,
    encode_peer,
)
from .error_code import ErrorCode
from .mutable_item import (
    MAX_SALT_SIZE,
    MAX_VALUE_SIZE,
    ImmutableItem,
    ItemError,
    MutableItem,
    decode_value,
)
from .node_id import ID_BYTES, NodeId

__all__ = [
    "AnnouncePeer",
    "Error",
    "FindNode",
    "Get",
    "GetPeers",
    "MalformedMessage",
    "Message",
    "Ping",
    "Put",
    "Query",
    "Response",
    "decode",
    "encode",
    "new_transaction_id",
]


class MalformedMessage(ValueError):
    """Bytes that are not a KRPC message this codec accepts.

    When the bytes were a query whose transaction id could be read, `error_reply` is the error
    to answer with (``code``: 203 protocol error, 204 unknown method, 205/207 BEP 44 limits),
    unless that answer would be longer than the query: a reply never amplifies. Anything else
    deserves silence: answering non-queries invites loops.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: ErrorCode = ErrorCode.PROTOCOL,
        transaction_id: bytes | None = None,
        query: bool = False,
        request_size: int = 0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.transaction_id = transaction_id
        self.query = query
        self.request_size = request_size

    def error_reply(self) -> Error | None:
        """The KRPC error to send back, or None when no reply is due."""
        if not self.query or self.transaction_id is None:
            return None
        reply = Error(transaction_id=self.transaction_id, code=self.code, message=self.code.phrase)
        return reply if len(encode(reply)) <= self.request_size else None


def new_transaction_id(size: int = 2) -> bytes:
    """A random transaction id; BEP 5 suggests 2 bytes (65536 outstanding queries)."""
    return secrets.token_bytes(size)


def _bytes(what: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_: object, __: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"{what} must be bytes, got {value!r:.80}")

    return check


def _optional_bytes(what: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    check = _bytes(what)

    def optional(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check(instance, attribute, value)

    return optional


def _node_id(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, NodeId):
        raise TypeError(f"expected a NodeId, got {value!r:.80}")


def _port(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"port must be an int, got {value!r}")
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"port {value} is outside 0..65535")


def _optional_int(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"expected an int, got {value!r}")


def _want(value: Iterable[bytes]) -> tuple[bytes, ...]:
    items = tuple(value)
    for item in items:
        if not isinstance(item, bytes):
            raise TypeError(f"want entries are bytes such as b'n4', got {item!r:.80}")
    return items


def _nodes_of(value: Iterable[NodeInfo], ipv6: bool) -> tuple[NodeInfo, ...]:
    nodes = tuple(value)
    for node in nodes:
        if not isinstance(node, NodeInfo) or node.is_ipv6 != ipv6:
            raise ValueError(f"{node!r:.80} is not an IPv{6 if ipv6 else 4} NodeInfo")
    return nodes


def _nodes4(value: Iterable[NodeInfo]) -> tuple[NodeInfo, ...]:
    return _nodes_of(value, ipv6=False)


def _nodes6(value: Iterable[NodeInfo]) -> tuple[NodeInfo, ...]:
    return _nodes_of(value, ipv6=True)


def _peers(value: Iterable[Address]) -> tuple[Address, ...]:
    return tuple(check_address(address) for address in value)


def _optional_address(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_address(value)


@attrs.frozen(kw_only=True)
class Query:
    """What every query carries: ``t``, the sender's ``id``, ``ro`` (BEP 43) and ``v``."""

    METHOD: ClassVar[bytes] = b""

    transaction_id: bytes = attrs.field(validator=_bytes("transaction id"))
    sender: NodeId = attrs.field(validator=_node_id)
    read_only: bool = False
    version: bytes | None = attrs.field(default=None, validator=_optional_bytes("version"))

    def __attrs_post_init__(self) -> None:
        if not self.METHOD:
            raise TypeError("Query is abstract: build a Ping, FindNode, GetPeers, ... instead")

    def _arguments(self) -> dict[bytes, Any]:
        return {}


@attrs.frozen(kw_only=True)
class Ping(Query):
    """BEP 5 ping."""

    METHOD: ClassVar[bytes] = b"ping"


@attrs.frozen(kw_only=True)
class FindNode(Query):
    """BEP 5 find_node; ``want`` (BEP 32) asks for ``n4`` and/or ``n6`` nodes."""

    METHOD: ClassVar[bytes] = b"find_node"

    target: NodeId = attrs.field(validator=_node_id)
    want: tuple[bytes, ...] = attrs.field(default=(), converter=_want)

    def _arguments(self) -> dict[bytes, Any]:
        return {b"target": self.target.to_bytes(), **_want_argument(self.want)}


@attrs.frozen(kw_only=True)
class GetPeers(Query):
    """BEP 5 get_peers."""

    METHOD: ClassVar[bytes] = b"get_peers"

    info_hash: NodeId = attrs.field(validator=_node_id)
    want: tuple[bytes, ...] = attrs.field(default=(), converter=_want)

    def _arguments(self) -> dict[bytes, Any]:
        return {b"info_hash": self.info_hash.to_bytes(), **_want_argument(self.want)}


@attrs.frozen(kw_only=True)
class AnnouncePeer(Query):
    """BEP 5 announce_peer; with ``implied_port`` the UDP source port replaces ``port``."""

    METHOD: ClassVar[bytes] = b"announce_peer"

    info_hash: NodeId = attrs.field(validator=_node_id)
    port: int = attrs.field(validator=_port)
    token: bytes = attrs.field(validator=_bytes("token"))
    implied_port: bool = False

    def _arguments(self) -> dict[bytes, Any]:
        arguments: dict[bytes, Any] = {
            b"info_hash": self.info_hash.to_bytes(),
            b"port": self.port,
            b"token": self.token,
        }
        if self.implied_port:
            arguments[b"implied_port"] = 1
        return arguments


@attrs.frozen(kw_only=True)
class Get(Query):
    """BEP 44 get; ``seq`` asks for the item only when it is newer than that.

    ``token`` (our extension; other nodes ignore an argument they do not know) echoes the token
    this node got for ``target`` from the node it asks: the round trip proves our address, so a
    value too large to send an unproven address comes back (see `Responder`).
    """

    METHOD: ClassVar[bytes] = b"get"

    target: NodeId = attrs.field(validator=_node_id)
    seq: int | None = attrs.field(default=None, validator=_optional_int)
    want: tuple[bytes, ...] = attrs.field(default=(), converter=_want)
    token: bytes | None = attrs.field(default=None, validator=_optional_bytes("token"))

    def _arguments(self) -> dict[bytes, Any]:
        arguments: dict[bytes, Any] = {b"target": self.target.to_bytes()}
        if self.seq is not None:
            arguments[b"seq"] = self.seq
        if self.token is not None:
            arguments[b"token"] = self.token
        return {**arguments, **_want_argument(self.want)}


@attrs.frozen(kw_only=True)
class Put(Query):
    """BEP 44 put of an immutable or a mutable item; ``cas`` only with a mutable one."""

    METHOD: ClassVar[bytes] = b"put"

    token: bytes = attrs.field(validator=_bytes("token"))
    item: MutableItem | ImmutableItem = attrs.field()
    cas: int | None = attrs.field(default=None, validator=_optional_int)

    @item.validator
    def _check_item(self, _: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, MutableItem | ImmutableItem):
            raise TypeError(f"expected a MutableItem or ImmutableItem, got {value!r:.80}")

    @cas.validator
    def _check_cas(self, _: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and not isinstance(self.item, MutableItem):
            raise ValueError("cas applies to mutable puts only")

    def _arguments(self) -> dict[bytes, Any]:
        arguments: dict[bytes, Any] = {
            b"token": self.token,
            b"v": bencoding.preencoded(self.item.value),
        }
        if isinstance(self.item, MutableItem):
            arguments[b"k"] = self.item.public_key
            arguments[b"seq"] = self.item.seq
            arguments[b"sig"] = self.item.signature
            if self.item.salt:
                arguments[b"salt"] = self.item.salt
            if self.cas is not None:
                arguments[b"cas"] = self.cas
        return arguments


def _want_argument(want: tuple[bytes, ...]) -> dict[bytes, Any]:
    return {b"want": list(want)} if want else {}


@attrs.frozen(kw_only=True)
class Response:
    """A reply to any query; which fields make sense depends on the query it answers.

    ``nodes``/``nodes6`` answer find_node, get_peers and get; ``token`` answers get_peers and
    get; ``peers`` is get_peers' ``values``; ``value``, ``key``, ``signature`` and ``seq``
    answer get (a mutable item carries all four; a seq alone says "nothing newer").
    """

    transaction_id: bytes = attrs.field(validator=_bytes("transaction id"))
    sender: NodeId = attrs.field(validator=_node_id)
    version: bytes | None = attrs.field(default=None, validator=_optional_bytes("version"))
    requester: Address | None = attrs.field(default=None, validator=_optional_address)
    nodes: tuple[NodeInfo, ...] = attrs.field(default=(), converter=_nodes4)
    nodes6: tuple[NodeInfo, ...] = attrs.field(default=(), converter=_nodes6)
    token: bytes | None = attrs.field(default=None, validator=_optional_bytes("token"))
    peers: tuple[Address, ...] = attrs.field(default=(), converter=_peers)
    value: bytes | None = attrs.field(default=None, validator=_optional_bytes("value"))
    key: bytes | None = attrs.field(default=None, validator=_optional_bytes("key"))
    signature: bytes | None = attrs.field(default=None, validator=_optional_bytes("signature"))
    seq: int | None = attrs.field(default=None, validator=_optional_int)

    def __attrs_post_init__(self) -> None:
        if self.value is not None:
            if len(self.value) > MAX_VALUE_SIZE:
                raise ValueError(f"value is {len(self.value)} bytes, at most {MAX_VALUE_SIZE}")
            decode_value(self.value)
        if (self.key is None) != (self.signature is None):
            raise ValueError("key and signature come together")
        if self.key is not None and (self.value is None or self.seq is None):
            raise ValueError("a mutable item needs value and seq with key and signature")
        if (
            self.key is not None
            and self.signature is not None
            and self.seq is not None
            and self.value is not None
        ):
            MutableItem(self.key, self.seq, self.value, self.signature)

    @property
    def all_nodes(self) -> tuple[NodeInfo, ...]:
        """``nodes`` then ``nodes6``."""
        return self.nodes + self.nodes6

    def mutable_item(self, salt: bytes = b"") -> MutableItem | None:
        """The mutable item this get response carries, given the salt the reader used (BEP 44
        does not echo it), or None. Unverified: check `MutableItem.verify` and its target."""
        if self.key is None or self.signature is None or self.seq is None or self.value is None:
            return None
        return MutableItem(self.key, self.seq, self.value, self.signature, salt)

    def immutable_item(self) -> ImmutableItem | None:
        """The immutable item this get response carries, or None. Check its target."""
        if self.value is None or self.key is not None:
            return None
        return ImmutableItem(self.value)

    def _body(self) -> dict[bytes, Any]:
        body: dict[bytes, Any] = {b"id": self.sender.to_bytes()}
        if self.nodes:
            body[b"nodes"] = encode_nodes(self.nodes)
        if self.nodes6:
            body[b"nodes6"] = encode_nodes6(self.nodes6)
        if self.token is not None:
            body[b"token"] = self.token
        if self.peers:
            body[b"values"] = [encode_peer(peer) for peer in self.peers]
        if self.value is not None:
            body[b"v"] = bencoding.preencoded(self.value)
        if self.key is not None:
            body[b"k"] = self.key
        if self.signature is not None:
            body[b"sig"] = self.signature
        if self.seq is not None:
            body[b"seq"] = self.seq
        return body


@attrs.frozen(kw_only=True)
class Error:
    """A KRPC error: ``e`` is ``[code, message]`` (BEP 5 "Errors")."""

    transaction_id: bytes = attrs.field(validator=_bytes("transaction id"))
    code: int = attrs.field()
    message: str = attrs.field(default="")
    version: bytes | None = attrs.field(default=None, validator=_optional_bytes("version"))

    @code.validator
    def _check_code(self, _: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"error code must be an int, got {value!r}")

    @message.validator
    def _check_message(self, _: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise TypeError(f"error message must be a str, got {value!r:.80}")
        value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates


Message: TypeAlias = Query | Response | Error


def encode(message: Message) -> bytes:
    """The bencoded form of ``message``."""
    top: dict[bytes, Any] = {b"t": message.transaction_id}
    if isinstance(message, Query):
        top[b"y"] = b"q"
        top[b"q"] = message.METHOD
        top[b"a"] = {b"id": message.sender.to_bytes(), **message._arguments()}
        if message.read_only:
            top[b"ro"] = 1
    elif isinstance(message, Response):
        top[b"y"] = b"r"
        top[b"r"] = message._body()
        if message.requester is not None:
            top[b"ip"] = encode_peer(message.requester)
    else:
        top[b"y"] = b"e"
        top[b"e"] = [int(message.code), message.message.encode("utf-8")]
    if message.version is not None:
        top[b"v"] = message.version
    return bencoding.encode(top)


_NO_VALUE: Final = object()


class _Reader:
    """Typed access to one decoded dictionary; failures raise MalformedMessage."""

    def __init__(self, where: str, value: object, fail: Callable[..., MalformedMessage]) -> None:
        if not isinstance(value, dict):
            raise fail(f"{where} is not a dictionary")
        self._where = where
        self._dict: dict[bytes, object] = value
        self._fail = fail

    def raw(self, key: bytes) -> object:
        return self._dict.get(key, _NO_VALUE)

    def has(self, key: bytes) -> bool:
        return key in self._dict

    def bytes_(self, key: bytes, size: int | None = None) -> bytes:
        value = self._dict.get(key)
        if not isinstance(value, bytes):
            raise self._fail(f"{self._where}: {key.decode()!r} missing or not a string")
        if size is not None and len(value) != size:
            raise self._fail(f"{self._where}: {key.decode()!r} is {len(value)} bytes, not {size}")
        return value

    def optional_bytes(self, key: bytes, size: int | None = None) -> bytes | None:
        return self.bytes_(key, size) if key in self._dict else None

    def int_(self, key: bytes) -> int:
        value = self._dict.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(f"{self._where}: {key.decode()!r} missing or not an integer")
        return value

    def optional_int(self, key: bytes) -> int | None:
        return self.int_(key) if key in self._dict else None

    def node_id(self, key: bytes) -> NodeId:
        return NodeId.from_bytes(self.bytes_(key, ID_BYTES))

    def want(self) -> tuple[bytes, ...]:
        if b"want" not in self._dict:
            return ()
        value = self._dict[b"want"]
        if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
            raise self._fail(f"{self._where}: 'want' is not a list of strings")
        return tuple(value)


def decode(data: bytes) -> Message:
    """The message in ``data``; MalformedMessage for anything else."""
    try:
        top_value = bencoding.decode(bytes(data))
    except Exception as exc:  # fastbencode raises ValueError, TypeError, OverflowError...
        raise MalformedMessage(f"not bencoding: {exc}") from None
    state: dict[str, Any] = {"transaction_id": None, "query": False, "request_size": len(data)}

    def fail(reason: str, code: ErrorCode = ErrorCode.PROTOCOL) -> MalformedMessage:
        return MalformedMessage(reason, code=code, **state)

    top = _Reader("message", top_value, fail)
    kind = top.raw(b"y")
    state["query"] = kind == b"q"
    transaction_id = top.bytes_(b"t")
    state["transaction_id"] = transaction_id
    version = top.optional_bytes(b"v")
    try:
        if kind == b"q":
            return _decode_query(top, transaction_id, version, fail)
        if kind == b"r":
            return _decode_response(top, transaction_id, version, fail)
        if kind == b"e":
            return _decode_error(top, transaction_id, version, fail)
    except (ValueError, TypeError) as exc:  # ItemError and CompactError are ValueErrors
        if isinstance(exc, MalformedMessage):
            raise
        code = exc.code if isinstance(exc, ItemError) else ErrorCode.PROTOCOL
        raise fail(str(exc), code) from None
    if kind is _NO_VALUE:
        raise fail("'y' is missing")
    raise fail(f"'y' is {kind!r:.20}, not 'q', 'r' or 'e'")


def _decode_query(
    top: _Reader,
    transaction_id: bytes,
    version: bytes | None,
    fail: Callable[..., MalformedMessage],
) -> Query:
    method = top.bytes_(b"q")
    read_only = top.optional_int(b"ro")
    arguments = _Reader("arguments", top.raw(b"a"), fail)
    common: dict[str, Any] = {
        "transaction_id": transaction_id,
        "sender": arguments.node_id(b"id"),
        "read_only": bool(read_only),
        "version": version,
    }
    parse = _QUERY_PARSERS.get(method)
    if parse is None:
        raise fail(f"unknown method {method!r:.40}", ErrorCode.METHOD_UNKNOWN)
    return parse(arguments, common)


def _ping(arguments: _Reader, common: dict[str, Any]) -> Query:
    return Ping(**common)


def _find_node(arguments: _Reader, common: dict[str, Any]) -> Query:
    return FindNode(target=arguments.node_id(b"target"), want=arguments.want(), **common)


def _get_peers(arguments: _Reader, common: dict[str, Any]) -> Query:
    return GetPeers(info_hash=arguments.node_id(b"info_hash"), want=arguments.want(), **common)


def _announce_peer(arguments: _Reader, common: dict[str, Any]) -> Query:
    return AnnouncePeer(
        info_hash=arguments.node_id(b"info_hash"),
        port=arguments.int_(b"port"),
        token=arguments.bytes_(b"token"),
        implied_port=bool(arguments.optional_int(b"implied_port")),
        **common,
    )


def _get(arguments: _Reader, common: dict[str, Any]) -> Query:
    return Get(
        target=arguments.node_id(b"target"),
        seq=arguments.optional_int(b"seq"),
        want=arguments.want(),
        token=arguments.optional_bytes(b"token"),
        **common,
    )


def _value(reader: _Reader) -> bytes | None:
    raw = reader.raw(b"v")
    if raw is _NO_VALUE:
        return None
    value = bencoding.encode(raw)  # canonical, hence verbatim: bdecode is strict
    if len(value) > MAX_VALUE_SIZE:
        raise ItemError(
            f"bencoded value is {len(value)} bytes, at most {MAX_VALUE_SIZE}",
            ErrorCode.MESSAGE_TOO_BIG,
        )
    return value


def _put(arguments: _Reader, common: dict[str, Any]) -> Query:
    token = arguments.bytes_(b"token")
    value = _value(arguments)
    if value is None:
        raise ItemError("put without 'v'")
    item: MutableItem | ImmutableItem
    if arguments.has(b"k"):
        salt = arguments.optional_bytes(b"salt") or b""
        if len(salt) > MAX_SALT_SIZE:
            raise ItemError(
                f"salt is {len(salt)} bytes, at most {MAX_SALT_SIZE}", ErrorCode.SALT_TOO_BIG
            )
        item = MutableItem(
            arguments.bytes_(b"k"),
            arguments.int_(b"seq"),
            value,
            arguments.bytes_(b"sig"),
            salt,
        )
        cas = arguments.optional_int(b"cas")
    else:
        if any(arguments.has(key) for key in (b"sig", b"seq", b"salt", b"cas")):
            raise ItemError("'sig', 'seq', 'salt' or 'cas' without 'k'")
        item = ImmutableItem(value)
        cas = None
    return Put(token=token, item=item, cas=cas, **common)


_QUERY_PARSERS: Final[dict[bytes, Callable[[_Reader, dict[str, Any]], Query]]] = {
    Ping.METHOD: _ping,
    FindNode.METHOD: _find_node,
    GetPeers.METHOD: _get_peers,
    AnnouncePeer.METHOD: _announce_peer,
    Get.METHOD: _get,
    Put.METHOD: _put,
}


def _decode_response(
    top: _Reader,
    transaction_id: bytes,
    version: bytes | None,
    fail: Callable[..., MalformedMessage],
) -> Response:
    body = _Reader("response", top.raw(b"r"), fail)
    ip = top.optional_bytes(b"ip")
    values = body.raw(b"values")
    peers: tuple[Address, ...] = ()
    if values is not _NO_VALUE:
        if not isinstance(values, list) or not all(isinstance(v, bytes) for v in values):
            raise fail("response: 'values' is not a list of strings")
        peers = tuple(decode_peer(value) for value in values)
    return Response(
        transaction_id=transaction_id,
        sender=body.node_id(b"id"),
        version=version,
        requester=None if ip is None else decode_peer(ip),
        nodes=decode_nodes(body.optional_bytes(b"nodes") or b""),
        nodes6=decode_nodes6(body.optional_bytes(b"nodes6") or b""),
        token=body.optional_bytes(b"token"),
        peers=peers,
        value=_value(body),
        key=body.optional_bytes(b"k"),
        signature=body.optional_bytes(b"sig"),
        seq=body.optional_int(b"seq"),
    )


def _decode_error(
    top: _Reader,
    transaction_id: bytes,
    version: bytes | None,
    fail: Callable[..., MalformedMessage],
) -> Error:
    details = top.raw(b"e")
    if (
        not isinstance(details, list)
        or len(details) < 2
        or not isinstance(details[0], int)
        or not isinstance(details[1], bytes)
    ):
        raise fail("'e' is not a [code, message] list")
    return Error(
        transaction_id=transaction_id,
        code=details[0],
        message=details[1].decode("utf-8", errors="replace"),
        version=version,
    )
