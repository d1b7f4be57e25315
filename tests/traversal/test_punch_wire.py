"""Punch wire formats: control message and probe frame round trips, rejection, and sizes."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.dht import bencoding
from macula_nat.nat.profile import Confidence, NatProfile
from macula_nat.net.address import Address
from macula_nat.relay import frames
from macula_nat.traversal.punch_wire import (
    ADDRESS_SIZE,
    FIRST_BYTES,
    FRAME_SIZE,
    KEY_SIZE,
    LINK_ID_SIZE,
    MAX_CANDIDATES,
    NONCE_SIZE,
    Again,
    Answer,
    ControlError,
    ControlMessage,
    FrameKind,
    Offer,
    ProbeError,
    ProbeFrame,
    Role,
    Sync,
    decode_control,
    decode_probe,
    encode_control,
    encode_probe,
    is_probe_frame,
    peek_link_id,
)

LINK = bytes(range(1, 9))
KEY = bytes(range(32))

ports = st.integers(min_value=0, max_value=65535)
ips = st.ip_addresses().map(str)
addresses = st.tuples(ips, ports)
address_lists = (
    st.lists(addresses, max_size=MAX_CANDIDATES)
    # Runs on a few IPs, as port prediction makes: the port-only entries.
    | st.lists(
        st.tuples(st.sampled_from(["192.0.2.1", "2001:db8::1", "198.51.100.7"]), ports),
        max_size=MAX_CANDIDATES,
    )
).map(tuple)
profiles = st.builds(
    NatProfile,
    mapping=st.sampled_from(MappingBehavior),
    filtering=st.sampled_from(FilteringBehavior),
    allocation=st.sampled_from(PortAllocation),
    public_ip=ips,
    public_port=ports,
    detected_at=st.floats(min_value=0, max_value=4e9) | st.integers(0, 2**32),
    confidence=st.sampled_from(Confidence),
    nat_present=st.booleans(),
    local_address=st.none() | addresses,
    hairpinning=st.none() | st.booleans(),
    port_delta=st.none() | st.integers(min_value=-100, max_value=100),
    observers=st.lists(addresses, max_size=3).map(tuple),
    udp_blocked=st.booleans(),
)
link_ids = st.binary(min_size=LINK_ID_SIZE, max_size=LINK_ID_SIZE)
keys = st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE)
attempts = st.integers(min_value=1, max_value=2**64)
offers = st.builds(
    Offer,
    link_id=link_ids,
    key=keys,
    attempt=attempts,
    candidates=address_lists,
    predicted=address_lists,
    profile=st.none() | profiles,
)
answers = st.builds(
    Answer,
    link_id=link_ids,
    attempt=attempts,
    candidates=address_lists,
    predicted=address_lists,
    profile=st.none() | profiles,
)
syncs = st.builds(Sync, link_id=link_ids, attempt=attempts)
agains = st.builds(Again, link_id=link_ids, attempt=attempts)
messages = offers | answers | syncs | agains
probe_frames = st.builds(
    ProbeFrame,
    st.sampled_from(FrameKind),
    st.sampled_from(Role),
    link_ids,
    st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE),
    addresses,
)


def _only_raises(
    decode: Callable[[bytes], object], data: bytes, error: type[Exception]
) -> object | None:
    """What ``decode`` returns, or None if it raised exactly ``error`` (and not another type)."""
    try:
        return decode(data)
    except Exception as exc:
        assert type(exc) is error, f"{type(exc).__name__}: {exc}"
        return None


def _profile(ip: str = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1") -> NatProfile:
    return NatProfile(
        mapping="pd",
        filtering="pd",
        allocation="pc",
        public_ip=ip,
        public_port=40000,
        detected_at=1_700_000_000.123456,
        confidence="medium",
        local_address=("fd00:1234:5678:9abc:def0:1234:5678:9abc", 40000),
        hairpinning=False,
        port_delta=2,
        observers=[
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:10", 3478),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:11", 3479),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:12", 3478),
        ],
    )


def _offer(**changes: object) -> Offer:
    fields: dict[str, object] = {
        "link_id": LINK,
        "key": KEY,
        "attempt": 1,
        "candidates": [("203.0.113.5", 40000), ("192.168.1.20", 40000)],
        "predicted": [("203.0.113.5", 40002), ("203.0.113.5", 40004)],
        "profile": _profile("203.0.113.5"),
    }
    fields.update(changes)
    return Offer(**fields)  # type: ignore[arg-type]


# -- control messages: round trips ---------------------------------------------------------------


@given(messages)
def test_every_control_message_round_trips(message: ControlMessage) -> None:
    assert decode_control(encode_control(message)) == message


def test_each_message_type_decodes_as_itself() -> None:
    sync = Sync(link_id=LINK, attempt=7)
    again = Again(link_id=LINK, attempt=1)
    answer = Answer(link_id=LINK, attempt=2, candidates=[("2001:db8::5", 9)])
    for message in (_offer(), _offer(predicted=(), profile=None), answer, sync, again):
        decoded = decode_control(encode_control(message))
        assert type(decoded) is type(message)
        assert decoded == message


def test_sync_has_a_fixed_wire_form() -> None:
    assert encode_control(Sync(link_id=LINK, attempt=3)) == (b"d1:i8:" + LINK + b"1:ni3e1:t1:se")


def test_again_has_a_fixed_wire_form() -> None:
    assert encode_control(Again(link_id=LINK, attempt=1)) == (b"d1:i8:" + LINK + b"1:ni1e1:t1:ge")


def test_udp_blocked_travels_only_when_true_so_older_nodes_read_every_other_profile() -> None:
    """Older decoders refuse unknown profile fields: a false ``udp_blocked`` is left out."""
    for blocked in (False, True):
        profile = attrs.evolve(_profile(), udp_blocked=blocked)
        value = bencoding.decode(encode_control(_offer(profile=profile)))
        assert isinstance(value, dict) and isinstance(value[b"p"], bytes)
        assert ("udp_blocked" in json.loads(value[b"p"])) is blocked
        decoded = decode_control(encode_control(_offer(profile=profile)))
        assert isinstance(decoded, Offer) and decoded.profile == profile


def test_a_repeated_ip_is_sent_as_a_port_alone() -> None:
    answer = Answer(
        link_id=LINK,
        attempt=1,
        candidates=[("192.0.2.1", 1000), ("192.0.2.1", 1001), ("::1", 5), ("192.0.2.1", 2)],
    )
    value = bencoding.decode(encode_control(answer))
    assert isinstance(value, dict)
    assert value[b"c"] == b"".join(
        (
            b"\x04\xc0\x00\x02\x01\x03\xe8",
            b"\x00\x03\xe9",
            b"\x06" + bytes(15) + b"\x01\x00\x05",
            b"\x04\xc0\x00\x02\x01\x00\x02",
        )
    )
    assert b"m" not in value and b"p" not in value  # empty and absent fields are left out


def test_the_profile_travels_as_compact_json_without_derived_or_null_fields() -> None:
    profile = attrs.evolve(_profile(), local_address=None, hairpinning=None)
    value = bencoding.decode(encode_control(_offer(profile=profile)))
    assert isinstance(value, dict)
    text = value[b"p"]
    assert isinstance(text, bytes)
    assert b" " not in text
    fields = json.loads(text)
    assert "nat_type" not in fields
    assert "local_address" not in fields and "hairpinning" not in fields
    assert NatProfile.from_json(fields) == profile


def test_addresses_are_normalised() -> None:
    offer = _offer(candidates=[["2001:DB8::0001", 5]], predicted=[("192.0.2.1", 6)])
    assert offer.candidates == (("2001:db8::1", 5),)
    assert offer.predicted == (("192.0.2.1", 6),)


def test_a_full_offer_fits_in_one_small_datagram() -> None:
    # The binary worst case: 32 candidates on distinct IPv6 addresses and 32 predicted IPv6
    # mappings (on the NAT's public IP, as port prediction makes them). Measured: 808 bytes
    # without a profile, 1136 with one that sets every field. The profile's JSON grows with
    # its addresses' text: with all five as full-length IPv6 the same Offer is 1262 bytes.
    public = "2001:db8::77"
    bare = Offer(
        link_id=LINK,
        key=KEY,
        attempt=2**32,
        candidates=[
            (f"2001:db8:1234:5678:9abc:def0:1234:{i + 1:x}", 65000 + i)
            for i in range(MAX_CANDIDATES)
        ],
        predicted=[(public, 60000 + 2 * i) for i in range(MAX_CANDIDATES)],
    )
    profile = attrs.evolve(
        _profile(public),
        local_address=("fd00::20", 40000),
        observers=[("2001:db8::10", 3478), ("2001:db8::11", 3479), ("2001:db8::12", 3478)],
    )
    full = attrs.evolve(bare, profile=profile)
    assert len(encode_control(bare)) < 850
    assert len(encode_control(full)) < 1200
    assert decode_control(encode_control(full)) == full


# -- control messages: rejection ----------------------------------------------------------------


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_control_error(data: bytes) -> None:
    _only_raises(decode_control, data, ControlError)


@given(
    st.dictionaries(
        st.sampled_from(list(b"tiknmcpx")).map(lambda b: bytes((b,))),
        st.binary(max_size=40) | st.integers() | st.lists(st.binary(max_size=4)),
    )
)
def test_arbitrary_dictionaries_raise_only_control_error(value: dict[bytes, object]) -> None:
    decoded = _only_raises(decode_control, bencoding.encode(value), ControlError)
    if decoded is not None:
        assert isinstance(decoded, Offer | Answer | Sync | Again)


@given(messages, st.data())
def test_mutated_encodings_raise_only_control_error(
    message: ControlMessage, data: st.DataObject
) -> None:
    encoded = bytearray(encode_control(message))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    mutation = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
    if mutation == "flip":
        encoded[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    elif mutation == "delete":
        del encoded[index : index + data.draw(st.integers(min_value=1, max_value=20))]
    elif mutation == "insert":
        encoded[index:index] = data.draw(st.binary(min_size=1, max_size=20))
    else:
        del encoded[index:]
    decoded = _only_raises(decode_control, bytes(encoded), ControlError)
    if decoded is not None:  # what decodes is a valid message, so it encodes again
        assert isinstance(decoded, Offer | Answer | Sync | Again)
        assert decode_control(encode_control(decoded)) == decoded


def _encoded(**fields: object) -> bytes:
    value: dict[bytes, object] = {
        b"t": b"o",
        b"i": LINK,
        b"k": KEY,
        b"n": 1,
        b"c": b"\x04\xc0\x00\x02\x01\x03\xe8",
    }
    for name, field in fields.items():
        if field is None:
            del value[name.encode()]
        else:
            value[name.encode()] = field
    return bencoding.encode(value)


def _profile_json(**changes: object) -> bytes:
    fields = _profile().to_json()
    del fields["nat_type"], fields["mapped"]
    fields.update(changes)
    return json.dumps(fields).encode()


MALFORMED = {
    "not bencoding": (b"d1:t1:o", "not a control message"),
    "trailing bytes": (_encoded() + b"x", "junk"),
    "unsorted keys": (_encoded().replace(b"1:i8:", b"1:z8:", 1), "control message"),
    "a list": (bencoding.encode([b"t", b"o"]), "a dictionary"),
    "no type": (_encoded(t=None), "'t'"),
    "integer type": (_encoded(t=1), "'t'"),
    "unknown type": (_encoded(t=b"q"), "unknown control message type"),
    "unknown field": (_encoded(x=b"1"), "unknown fields"),
    "key in an answer": (_encoded(t=b"a"), "unknown fields"),
    "7-byte link id": (_encoded(i=LINK[:7]), "'i' must be 8 bytes"),
    "31-byte key": (_encoded(k=KEY[:31]), "'k' must be 32 bytes"),
    "no key": (_encoded(k=None), "'k'"),
    "attempt 0": (_encoded(n=0), "attempt"),
    "attempt as bytes": (_encoded(n=b"1"), "attempt"),
    "no candidates": (_encoded(c=None), "'c'"),
    "candidates as a list": (_encoded(c=[b"\x04\xc0\x00\x02\x01\x03\xe8"]), "'c'"),
    "33 candidates": (_encoded(c=b"\x04\xc0\x00\x02\x01\x03\xe8" * 33), "more than 32"),
    "33 predicted": (_encoded(m=b"\x06" + bytes(18) + b"\x00\x00\x01" * 32), "more than 32"),
    "unknown family": (_encoded(c=b"\x05\xc0\x00\x02\x01\x03\xe8"), "family byte 5"),
    "port alone first": (_encoded(c=b"\x00\x03\xe8"), "needs an address before it"),
    "short port": (_encoded(c=b"\x04\xc0\x00\x02\x01\x03\xe8\x00\x03"), "cut short"),
    "short IPv6": (_encoded(m=b"\x06" + bytes(17)), "IPv6 entry cut short"),
    "profile not JSON": (_encoded(p=b"{"), "not a control message"),
    "profile not UTF-8": (_encoded(p=b"\xff\xfe\xfd"), "not a control message"),
    "profile a list": (_encoded(p=b"[]"), "JSON object"),
    "profile an integer": (_encoded(p=5), "byte string"),
    "profile missing fields": (_encoded(p=b'{"mapping":"ei"}'), "not a NAT profile"),
    "profile unknown field": (_encoded(p=_profile_json(colour="red")), "unknown profile"),
    "profile null field": (_encoded(p=_profile_json(hairpinning=None)), "null"),
    "profile bad mapping": (_encoded(p=_profile_json(mapping="xx")), "not a NAT profile"),
    "profile bool port": (_encoded(p=_profile_json(public_port=True)), "public_port"),
    "profile string time": (_encoded(p=_profile_json(detected_at="now")), "detected_at"),
    "profile NaN time": (_encoded(p=_profile_json(detected_at=float("nan"))), "NaN"),
    "profile bool delta": (_encoded(p=_profile_json(port_delta=False)), "port_delta"),
    "profile deep JSON": (_encoded(p=b"[" * 100_000), "not a control message"),
}


@pytest.mark.parametrize(("data", "match"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_control_messages_raise_control_error(data: bytes, match: str) -> None:
    with pytest.raises(ControlError, match=match) as caught:
        decode_control(data)
    assert type(caught.value) is ControlError


def test_the_malformed_cases_differ_from_a_valid_message_only_as_named() -> None:
    offer = decode_control(_encoded())
    assert isinstance(offer, Offer)
    assert offer.candidates == (("192.0.2.1", 1000),)
    assert decode_control(_encoded(m=b"", p=_profile_json())) == attrs.evolve(
        offer, profile=_profile()
    )


# -- control messages: field validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"link_id": LINK[:7]}, "link_id must be 8 bytes"),
        ({"link_id": bytearray(LINK)}, "link_id must be 8 bytes"),
        ({"key": KEY + b"!"}, "key must be 32 bytes"),
        ({"attempt": 0}, "attempt must be an int >= 1"),
        ({"attempt": True}, "attempt must be an int >= 1"),
        ({"candidates": [("192.0.2.1", p) for p in range(33)]}, "at most 32 candidates"),
        ({"predicted": [("192.0.2.1", p) for p in range(33)]}, "at most 32 predicted"),
        ({"candidates": [("fe80::1%eth0", 5)]}, "scope id"),
        ({"candidates": [("example.com", 5)]}, "does not appear to be an IPv4 or IPv6"),
        ({"predicted": [("192.0.2.1", 65536)]}, "port must be an int"),
        ({"profile": "full cone"}, "profile must be a NatProfile"),
        ({"profile": attrs.evolve(_profile(), detected_at=float("inf"))}, "finite"),
    ],
)
def test_offer_fields_are_validated(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _offer(**changes)


def test_answer_and_sync_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="link_id must be 8 bytes"):
        Sync(link_id=b"", attempt=1)
    with pytest.raises(ValueError, match="attempt must be an int >= 1"):
        Sync(link_id=LINK, attempt=-1)
    with pytest.raises(ValueError, match="at most 32 candidates"):
        Answer(link_id=LINK, attempt=1, candidates=[("::1", p) for p in range(33)])
    Answer(link_id=LINK, attempt=1, candidates=[("::1", p) for p in range(32)])


def test_the_key_stays_out_of_the_repr() -> None:
    assert KEY.hex() not in repr(_offer()) and repr(KEY) not in repr(_offer())


# -- probe frames -------------------------------------------------------------------------------

ADDR: Address = ("198.51.100.7", 4000)


@given(probe_frames, keys)
def test_probe_frames_round_trip(frame: ProbeFrame, key: bytes) -> None:
    data = encode_probe(frame, key)
    assert len(data) == FRAME_SIZE
    assert is_probe_frame(data)
    assert peek_link_id(data) == frame.link_id
    assert decode_probe(data, key) == frame


@pytest.mark.parametrize(
    ("kind", "role", "first"),
    [
        (FrameKind.PROBE, Role.INITIATOR, 0x10),
        (FrameKind.PROBE, Role.RESPONDER, 0x11),
        (FrameKind.ACK, Role.INITIATOR, 0x12),
        (FrameKind.ACK, Role.RESPONDER, 0x13),
    ],
)
def test_probe_wire_form(kind: FrameKind, role: Role, first: int) -> None:
    nonce = b"\xa0" * NONCE_SIZE
    data = encode_probe(ProbeFrame(kind, role, LINK, nonce, ("192.0.2.1", 0x1234)), KEY)
    challenged = b"\x04" + bytes((192, 0, 2, 1)) + bytes(12) + b"\x12\x34"
    signed = bytes((first,)) + LINK + nonce + challenged
    assert len(challenged) == ADDRESS_SIZE
    assert data == signed + hmac.new(KEY, signed, hashlib.sha256).digest()[:16]
    assert decode_probe(data, KEY) == ProbeFrame(kind, role, LINK, nonce, ("192.0.2.1", 0x1234))


def test_an_ipv6_challenged_address_fills_its_sixteen_bytes() -> None:
    frame = ProbeFrame(FrameKind.ACK, Role.RESPONDER, LINK, bytes(8), ("2001:db8::1", 443))
    data = encode_probe(frame, KEY)
    assert data[17:36] == b"\x06" + bytes.fromhex("20010db8" + "00" * 11 + "01") + b"\x01\xbb"
    assert decode_probe(data, KEY) == frame


@pytest.mark.parametrize(
    "challenged",
    [
        pytest.param(b"\x05" + bytes(18), id="unknown-family"),
        pytest.param(b"\x04" + bytes(4) + b"\x01" + bytes(11) + b"\x00\x01", id="ipv4-padding"),
    ],
)
def test_a_malformed_challenged_address_is_a_probe_error_even_well_tagged(
    challenged: bytes,
) -> None:
    signed = b"\x10" + LINK + bytes(8) + challenged
    data = signed + hmac.new(KEY, signed, hashlib.sha256).digest()[:16]
    with pytest.raises(ProbeError, match="not a challenged address"):
        decode_probe(data, KEY)


def test_probe_first_bytes_are_no_one_elses() -> None:
    assert set(range(0x10, 0x14)) == FIRST_BYTES
    taken = set(range(4)) | set(frames.FIRST_BYTES) | set(range(64, 128)) | set(range(192, 256))
    assert not FIRST_BYTES & taken


@given(probe_frames, keys, keys)
def test_a_tag_made_with_another_key_fails(frame: ProbeFrame, key: bytes, other: bytes) -> None:
    data = encode_probe(frame, key)
    if other != key:
        with pytest.raises(ProbeError, match="bad probe tag"):
            decode_probe(data, other)


@given(probe_frames, st.integers(min_value=0, max_value=FRAME_SIZE * 8 - 1))
def test_a_flipped_bit_anywhere_fails(frame: ProbeFrame, bit: int) -> None:
    data = bytearray(encode_probe(frame, KEY))
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProbeError) as caught:
        decode_probe(bytes(data), KEY)
    assert type(caught.value) is ProbeError


@given(st.binary(max_size=2 * FRAME_SIZE) | st.binary(min_size=FRAME_SIZE, max_size=FRAME_SIZE))
def test_arbitrary_bytes_raise_only_probe_error(data: bytes) -> None:
    assert _only_raises(lambda d: decode_probe(d, KEY), data, ProbeError) is None


@given(probe_frames, st.data())
def test_resized_probes_are_refused(frame: ProbeFrame, data: st.DataObject) -> None:
    encoded = encode_probe(frame, KEY)
    resized = data.draw(
        st.sampled_from([encoded[:-1], encoded + b"\x00", encoded[:1], b"", encoded * 2])
    )
    assert not is_probe_frame(resized)
    assert peek_link_id(resized) is None
    with pytest.raises(ProbeError, match="52 bytes"):
        decode_probe(resized, KEY)


@pytest.mark.parametrize("first", [0x00, 0x04, 0x0F, 0x14, 0x40, 0xC0])
def test_other_first_bytes_are_not_probes(first: int) -> None:
    data = (
        bytes((first,))
        + encode_probe(ProbeFrame(FrameKind.ACK, Role.RESPONDER, LINK, LINK, ADDR), KEY)[1:]
    )
    assert not is_probe_frame(data)
    assert peek_link_id(data) is None
    with pytest.raises(ProbeError, match="not a probe frame type"):
        decode_probe(data, KEY)


def test_peek_needs_no_key_and_checks_no_tag() -> None:
    data = encode_probe(ProbeFrame(FrameKind.PROBE, Role.INITIATOR, LINK, bytes(8), ADDR), KEY)
    forged = data[:-1] + bytes((data[-1] ^ 1,))
    assert peek_link_id(data) == LINK
    assert peek_link_id(forged) == LINK


def test_probe_fields_and_keys_are_validated() -> None:
    with pytest.raises(ValueError, match="link_id must be 8 bytes"):
        ProbeFrame(FrameKind.PROBE, Role.INITIATOR, LINK[:7], bytes(8), ADDR)
    with pytest.raises(ValueError, match="nonce must be 8 bytes"):
        ProbeFrame(FrameKind.PROBE, Role.INITIATOR, LINK, bytes(9), ADDR)
    with pytest.raises(TypeError):
        ProbeFrame(0, Role.INITIATOR, LINK, bytes(8), ADDR)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProbeFrame(FrameKind.PROBE, Role.INITIATOR, LINK, bytes(8), ("not an ip", 1))
    frame = ProbeFrame(FrameKind.PROBE, Role.INITIATOR, LINK, bytes(8), ADDR)
    with pytest.raises(ValueError, match="32 bytes") as caught:
        encode_probe(frame, KEY[:16])
    assert type(caught.value) is ValueError
    with pytest.raises(ValueError, match="32 bytes") as caught:
        decode_probe(encode_probe(frame, KEY), LINK)  # arguments mixed up: a bug, not bad input
    assert type(caught.value) is ValueError
