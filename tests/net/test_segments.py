"""The GSO split of a run of datagrams and the cut of a coalesced read (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.net.segments import MAX_SEGMENTS, MAX_SEND, segment_runs, split_segments

SIZES = st.lists(st.integers(min_value=0, max_value=1500), max_size=300)
QUIC_LIKE = st.builds(
    lambda full, count, last: [full] * count + ([last % (full + 1)] if last % (full + 1) else []),
    st.integers(min_value=1, max_value=1500),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=1500),
)


@given(st.one_of(SIZES, QUIC_LIKE))
def test_runs_cover_every_datagram_in_order_and_each_is_one_valid_gso_send(
    sizes: list[int],
) -> None:
    runs = segment_runs(sizes)

    assert [i for start, stop in runs for i in range(start, stop)] == list(range(len(sizes)))
    for start, stop in runs:
        run = sizes[start:stop]
        assert 1 <= len(run) <= MAX_SEGMENTS
        if len(run) > 1:
            assert sum(run) <= MAX_SEND
            assert all(size == run[0] for size in run[:-1])
            assert 0 < run[-1] <= run[0]


@given(st.one_of(SIZES, QUIC_LIKE))
def test_no_run_could_have_taken_the_next_datagram(sizes: list[int]) -> None:
    runs = segment_runs(sizes)

    for start, stop in runs[:-1]:
        run, following = sizes[start:stop], sizes[stop]
        assert (
            len(run) == MAX_SEGMENTS
            or sum(run) + following > MAX_SEND
            or run[0] == 0
            or following == 0
            or following > run[0]
            or run[-1] < run[0]  # a shorter datagram ended it
        )


@given(QUIC_LIKE)
def test_an_output_step_of_full_datagrams_takes_one_send_per_64_or_64_kib(
    sizes: list[int],
) -> None:
    full = sizes[0] if sizes else 1
    per_send = min(MAX_SEGMENTS, MAX_SEND // full)
    assert len(segment_runs(sizes)) <= -(-len(sizes) // per_send)


def test_a_longer_datagram_starts_a_new_run_and_a_shorter_one_ends_one() -> None:
    assert segment_runs([1200, 1200, 1300, 1300, 50, 1300]) == [(0, 2), (2, 5), (5, 6)]
    assert segment_runs([]) == []
    assert segment_runs([0, 0, 5]) == [(0, 1), (1, 2), (2, 3)]


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=50), st.data())
def test_split_undoes_a_gso_send(datagrams: list[bytes], data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=40))
    run = [d[:1] * size for d in datagrams[:-1]] + [datagrams[-1][:size]]

    assert split_segments(b"".join(run), size) == run


def test_split_refuses_a_zero_segment_size() -> None:
    with pytest.raises(ValueError, match="segment size"):
        split_segments(b"abc", 0)
