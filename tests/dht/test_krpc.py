"""The KRPC codec: BEP 5/43/44 example packets, round trips, and any bytes failing cleanly."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from macula_nat.dht import bencoding
from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.error_code import ErrorCode
from macula_nat.dht.krpc import (
    AnnouncePeer,
    Error,
    FindNode,
    Get,
    GetPeers,
    MalformedMessage,
    Message,
    Ping,
    Put,
    Query,
    Response,
    decode,
    encode,
    new_transaction_id,
)
from macula_nat.dht.mutable_item import ImmutableItem, MutableItem
from macula_nat.dht.node_id import NodeId

from .strategies import bencodables, messages

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ABC = NodeId.from_bytes(b"abcdefghij0123456789")
MNO = NodeId.from_bytes(b"mnopqrstuvwxyz123456")

# BEP 44 test vectors 1 and 2 (public domain).
VECTOR_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
VECTOR_SIG_SALTED = bytes.fromhex(
    "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
    "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)


def roundtrip(message: Message, wire: bytes) -> None:
    assert encode(message) == wire
    assert decode(wire) == message


# BEP 5 "DHT Queries" example packets (public domain), each both ways.


def test_bep5_ping() -> None:
    roundtrip(
        Ping(transaction_id=b"aa", sender=ABC),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
    )
    roundtrip(
        Response(transaction_id=b"aa", sender=MNO),
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
    )


def test_bep5_find_node() -> None:
    roundtrip(
        FindNode(transaction_id=b"aa", sender=ABC, target=MNO),
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node"
        b"1:t2:aa1:y1:qe",
    )


def test_bep5_get_peers_and_its_answers() -> None:
    roundtrip(
        GetPeers(transaction_id=b"aa", sender=ABC, info_hash=MNO),
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers"
        b"1:t2:aa1:y1:qe",
    )
    # "axje.u" is 97.120.106.101 port 0x2e75; "idhtnm" is 105.100.104.116 port 0x6e6d.
    roundtrip(
        Response(
            transaction_id=b"aa",
            sender=ABC,
            token=b"aoeusnth",
            peers=[("97.120.106.101", 11893), ("105.100.104.116", 28269)],
        ),
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee"
        b"1:t2:aa1:y1:re",
    )
    node = NodeInfo(MNO, ("192.0.2.1", 6881))
    roundtrip(
        Response(transaction_id=b"aa", sender=ABC, token=b"aoeusnth", nodes=[node]),
        b"d1:rd2:id20:abcdefghij01234567895:nodes26:mnopqrstuvwxyz123456\xc0\x00\x02\x01\x1a\xe1"
        b"5:token8:aoeusnthe1:t2:aa1:y1:re",
    )


def test_bep5_announce_peer_with_implied_port() -> None:
    roundtrip(
        AnnouncePeer(
            transaction_id=b"aa",
            sender=ABC,
            info_hash=MNO,
            port=6881,
            token=b"aoeusnth",
            implied_port=True,
        ),
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz123456"
        b"4:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
    )


def test_bep5_generic_error() -> None:
    roundtrip(
        Error(transaction_id=b"aa", code=201, message="A Generic Error Ocurred"),
        b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
    )


def test_bep43_read_only_flag_is_2_ro_i1e() -> None:
    roundtrip(
        Ping(transaction_id=b"aa", sender=ABC, read_only=True),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping2:roi1e1:t2:aa1:y1:qe",
    )
    assert decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping2:roi0e1:t2:aa1:y1:qe") == Ping(
        transaction_id=b"aa", sender=ABC
    )


def test_client_version_and_requester_ip() -> None:
    roundtrip(
        Response(transaction_id=b"aa", sender=MNO, version=b"LT\x01\x02", requester=("::1", 80)),
        b"d2:ip18:" + bytes(15) + b"\x01\x00\x50"
        b"1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:v4:LT\x01\x021:y1:re",
    )


def test_bep44_mutable_put_with_salt_and_cas() -> None:
    item = MutableItem(VECTOR_KEY, 1, b"12:Hello World!", VECTOR_SIG_SALTED, b"foobar")
    roundtrip(
        Put(transaction_id=b"aa", sender=ABC, token=b"tk", item=item, cas=0),
        b"d1:ad3:casi0e2:id20:abcdefghij01234567891:k32:" + VECTOR_KEY + b"4:salt6:foobar"
        b"3:seqi1e3:sig64:" + VECTOR_SIG_SALTED + b"5:token2:tk1:v12:Hello World!e"
        b"1:q3:put1:t2:aa1:y1:qe",
    )


def test_bep44_immutable_put_and_get() -> None:
    item = ImmutableItem(b"12:Hello World!")
    roundtrip(
        Put(transaction_id=b"aa", sender=ABC, token=b"tk", item=item),
        b"d1:ad2:id20:abcdefghij01234567895:token2:tk1:v12:Hello World!e1:q3:put1:t2:aa1:y1:qe",
    )
    roundtrip(
        Get(transaction_id=b"aa", sender=ABC, target=item.target, seq=3, want=(b"n4", b"n6")),
        b"d1:ad2:id20:abcdefghij01234567893:seqi3e6:target20:" + item.target.to_bytes() + b"4:want"
        b"l2:n42:n6ee1:q3:get1:t2:aa1:y1:qe",
    )
    answer = Response(transaction_id=b"aa", sender=MNO, token=b"tk", value=item.value)
    roundtrip(
        answer, b"d1:rd2:id20:mnopqrstuvwxyz1234565:token2:tk1:v12:Hello World!e1:t2:aa1:y1:re"
    )
    assert answer.immutable_item() == item
    assert answer.mutable_item() is None


def test_get_response_carries_the_mutable_item_without_its_salt() -> None:
    item = MutableItem(VECTOR_KEY, 1, b"12:Hello World!", VECTOR_SIG_SALTED, b"foobar")
    answer = Response(
        transaction_id=b"aa",
        sender=MNO,
        value=item.value,
        key=item.public_key,
        signature=item.signature,
        seq=item.seq,
    )
    assert b"salt" not in encode(answer)
    assert answer.mutable_item(b"foobar") == item
    assert answer.mutable_item(b"foobar").verify()  # type: ignore[union-attr]
    assert not answer.mutable_item().verify()  # type: ignore[union-attr]
    assert answer.immutable_item() is None


def test_values_are_embedded_verbatim() -> None:
    value = b"d1:ali1ei2ee1:bi-3ee"
    wire = encode(Put(transaction_id=b"", sender=ABC, token=b"", item=ImmutableItem(value)))
    assert b"1:v" + value + b"e" in wire
    decoded = decode(wire)
    assert isinstance(decoded, Put)
    assert decoded.item.value == value


@pytest.mark.parametrize(
    ("wire", "code", "reply"),
    [
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:pong1:t2:aa1:y1:qe", 204, True),
        (b"d1:ade1:q4:ping1:t2:aa1:y1:qe", 203, False),  # a reply would be longer
        (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", 203, False),
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping2:ro1:x1:t2:aa1:y1:qe", 203, True),
        (b"d1:q4:ping1:t2:aa1:y1:qe", 203, False),
        (b"d1:ad2:id20:abcdefghij0123456789e1:qi1e1:t2:aa1:y1:qe", 203, True),
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe", 203, False),
        (b"d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:xe", 203, False),
        (b"d1:rd2:id19:abcdefghij012345678e1:t2:aa1:y1:re", 203, False),
        (b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re", 203, False),
        (b"d1:rd2:id20:abcdefghij01234567896:valuesl3:abcee1:t2:aa1:y1:re", 203, False),
        (b"d1:eli201ee1:t2:aa1:y1:ee", 203, False),
        (
            b"d1:rd2:id20:abcdefghij01234567891:k32:" + bytes(32) + b"3:seqi1e1:v0:e1:t2:aa1:y1:re",
            203,
            False,
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567891:k32:"
            + bytes(32)
            + b"3:sig64:"
            + bytes(64)
            + b"1:v0:e1:t2:aa1:y1:re",
            203,
            False,
        ),
        (b"li1ee", 203, False),
        (b"", 203, False),
        (b"d1:t2:aa1:y1:qe\x00", 203, False),
    ],
)
def test_malformed_messages(wire: bytes, code: int, reply: bool) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode(wire)
    assert caught.value.code == code
    answer = caught.value.error_reply()
    if reply:
        assert answer == Error(transaction_id=b"aa", code=code, message=ErrorCode(code).phrase)
        assert decode(encode(answer)) == answer
        assert len(encode(answer)) <= len(wire)
    else:
        assert answer is None


def _put_wire(arguments: bytes) -> bytes:
    return b"d1:ad2:id20:abcdefghij0123456789" + arguments + b"e1:q3:put1:t2:aa1:y1:qe"


def test_put_limits_answer_with_bep44_codes() -> None:
    sig = b"64:" + bytes(64)
    key = b"1:k32:" + bytes(32)
    value_1000 = b"996:" + bytes(996)  # 1000 bytes bencoded
    value_1001 = b"997:" + bytes(997)
    decoded = decode(_put_wire(key + b"3:seqi0e3:sig" + sig + b"5:token0:1:v" + value_1000))
    assert isinstance(decoded, Put)
    cases = [
        (_put_wire(b"5:token0:1:v" + value_1001), ErrorCode.MESSAGE_TOO_BIG),
        (
            _put_wire(key + b"4:salt65:" + bytes(65) + b"3:seqi0e3:sig" + sig + b"5:token0:1:v0:"),
            ErrorCode.SALT_TOO_BIG,
        ),
        (_put_wire(key + b"3:seqi-1e3:sig" + sig + b"5:token0:1:v0:"), ErrorCode.PROTOCOL),
        (_put_wire(key + b"3:seqi0e3:sig3:abc5:token0:1:v0:"), ErrorCode.PROTOCOL),
        (_put_wire(key + b"3:sig" + sig + b"5:token0:1:v0:"), ErrorCode.PROTOCOL),
        (_put_wire(b"3:seqi0e5:token0:1:v0:"), ErrorCode.PROTOCOL),
        (_put_wire(b"5:token0:"), ErrorCode.PROTOCOL),
    ]
    for wire, code in cases:
        with pytest.raises(MalformedMessage) as caught:
            decode(wire)
        assert caught.value.code == code, wire
        reply = caught.value.error_reply()
        assert reply is not None
        assert reply.code == code


def test_response_too_big_is_dropped_not_answered() -> None:
    wire = b"d1:rd2:id20:abcdefghij01234567891:v997:" + bytes(997) + b"e1:t2:aa1:y1:re"
    with pytest.raises(MalformedMessage) as caught:
        decode(wire)
    assert caught.value.error_reply() is None


def test_unknown_keys_are_ignored() -> None:
    wire = b"d1:ad5:extrai7e2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q5:zzzzzi1ee"
    assert decode(wire) == Ping(transaction_id=b"aa", sender=ABC)


def test_invalid_messages_cannot_be_built() -> None:
    with pytest.raises(TypeError):
        Query(transaction_id=b"aa", sender=ABC)
    with pytest.raises(ValueError, match="cas"):
        Put(transaction_id=b"", sender=ABC, token=b"", item=ImmutableItem(b"0:"), cas=1)
    with pytest.raises(ValueError, match="together"):
        Response(transaction_id=b"", sender=ABC, key=bytes(32), value=b"0:", seq=1)
    with pytest.raises(ValueError, match="bencod"):
        Response(transaction_id=b"", sender=ABC, value=b"not bencoding")
    with pytest.raises(ValueError):
        Response(transaction_id=b"", sender=ABC, nodes=[NodeInfo(ABC, ("::1", 1))])
    with pytest.raises(ValueError):
        AnnouncePeer(transaction_id=b"", sender=ABC, info_hash=MNO, port=70000, token=b"")
    with pytest.raises(TypeError):
        Ping(transaction_id="aa", sender=ABC)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        Error(transaction_id=b"", code=201, message="\ud800")


def test_transaction_ids() -> None:
    assert len(new_transaction_id()) == 2
    assert len(new_transaction_id(4)) == 4
    assert len({new_transaction_id(8) for _ in range(50)}) == 50


@FAST
@given(messages)
def test_round_trip(message: Message) -> None:
    wire = encode(message)
    assert decode(wire) == message
    assert encode(decode(wire)) == wire


def _same_after_reencoding(decoded: Message) -> None:
    assert decode(encode(decoded)) == decoded


def _never_amplifies(error: MalformedMessage, request: bytes) -> None:
    reply = error.error_reply()
    if reply is not None:
        assert len(encode(reply)) <= len(request)
        assert decode(encode(reply)) == reply


@FAST
@given(st.binary(max_size=300))
@example(b"d1:t2:aa1:y1:qe")
@example(b"d1:ad2:id20:abcdefghij0123456789e1:q3:put1:t2:aa1:y1:qe")
@example(b"l" * 5000 + b"e" * 5000)
@example(b"i" + b"9" * 5000 + b"e")
def test_any_bytes_decode_or_raise_malformed_only(data: bytes) -> None:
    try:
        decoded = decode(data)
    except MalformedMessage as error:
        _never_amplifies(error, data)
        return
    _same_after_reencoding(decoded)


@FAST
@given(messages, st.data())
def test_mutated_messages_decode_or_raise_malformed_only(
    message: Message, data: st.DataObject
) -> None:
    """Replace or delete one key of a valid message, at the top or in its a/r dictionary."""
    tree = bencoding.decode(encode(message))
    assert isinstance(tree, dict)
    inner = next((tree[key] for key in (b"a", b"r") if key in tree), None)
    target = data.draw(st.sampled_from([tree] if inner is None else [tree, inner]))
    known = [b"t", b"y", b"q", b"a", b"r", b"e", b"v", b"ro", b"ip", b"id", b"target"]
    known += [b"info_hash", b"port", b"token", b"implied_port", b"seq", b"k", b"sig", b"salt"]
    known += [b"cas", b"nodes", b"nodes6", b"values", b"want"]
    key = data.draw(st.sampled_from(known + list(target)))
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = data.draw(bencodables)
    mutated = bencoding.encode(tree)
    try:
        decoded = decode(mutated)
    except MalformedMessage as error:
        _never_amplifies(error, mutated)
        return
    _same_after_reencoding(decoded)


@FAST
@given(messages, st.data())
def test_byte_flips_decode_or_raise_malformed_only(message: Message, data: st.DataObject) -> None:
    wire = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode(bytes(wire))
    except MalformedMessage as error:
        _never_amplifies(error, bytes(wire))
        return
    _same_after_reencoding(decoded)


def test_every_error_code_has_a_phrase() -> None:
    assert {code: code.phrase for code in ErrorCode}[ErrorCode.CAS_MISMATCH] == "CAS mismatch"
    assert len({code.phrase for code in ErrorCode}) == len(ErrorCode)
