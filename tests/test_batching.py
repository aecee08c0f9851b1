"""BatchSizer: batch sizes chosen from measured answer times, so that a batch of calls
that Kodi answers only after carrying them out never approaches the request timeout."""

from __future__ import annotations

import pytest

from metarr_sync.players.batching import START, BatchSizer


def run(sizer: BatchSizer, seconds_per_call: float, batches: int) -> list[int]:
    """Sizes of `batches` consecutive full batches on a box taking that long per call."""
    sizes = []
    for _ in range(batches):
        size = sizer.size
        sizes.append(size)
        sizer.measured(size, size * seconds_per_call)
    return sizes


def test_it_starts_small_and_grows_while_answers_come_back_well_inside_the_timeout():
    sizer = BatchSizer(timeout=30, limit=100)
    # 10 ms a call: 100 calls take 1 s, far inside a quarter of 30 s.
    assert run(sizer, 0.01, 7) == [START, 10, 20, 40, 80, 100, 100]


def test_growth_stops_where_a_batch_would_take_a_quarter_of_the_timeout():
    sizer = BatchSizer(timeout=30, limit=100)
    # Kodi 20.1 measured here: ~75 ms per RefreshMovie. A quarter of 30 s is 7.5 s: 100
    # calls would fill it, so growth stops at what fits in half of it and above.
    sizes = run(sizer, 0.075, 10)
    assert sizes[:5] == [5, 10, 20, 40, 80]
    assert all(size * 0.075 <= 7.5 for size in sizes)


def test_a_slow_box_gets_batches_that_fit_its_pace():
    # A Raspberry Pi reading NFOs over SMB, 1 s per refresh, with a 30 s timeout: five
    # calls take 5 s, between half and the whole of the 7.5 s budget, so batches stay at
    # five, never the 100 that would take 100 s.
    sizer = BatchSizer(timeout=30, limit=100)
    assert run(sizer, 1.0, 10) == [START] * 10
    # At 2 s a call, the first batch of five (10 s) is over budget: halved to two (4 s),
    # which stays (two calls more would take 8 s).
    sizer = BatchSizer(timeout=30, limit=100)
    assert run(sizer, 2.0, 4) == [START, 2, 2, 2]


def test_it_shrinks_at_once_after_a_slow_answer():
    sizer = BatchSizer(timeout=30, limit=100)
    run(sizer, 0.01, 6)
    assert sizer.size == 100
    # The box slows down (its NAS woke up): the next batch of 100 took 20 s.
    sizer.measured(100, 20.0)
    assert sizer.size == 37  # 7.5 s at 0.2 s a call
    sizer.measured(37, 37 * 2.0)  # much slower still: 2 s a call
    assert sizer.size == 3
    sizer.measured(3, 60.0)  # 20 s a call: beyond any budget
    assert sizer.size == 1


def test_a_slow_answer_at_least_halves_the_batch():
    sizer = BatchSizer(timeout=10, limit=100)
    run(sizer, 0.001, 6)
    assert sizer.size == 100
    # Just over the budget of 2.5 s: the time per call would allow 96, but it halves.
    sizer.measured(100, 2.6)
    assert sizer.size == 50


def test_between_half_and_the_whole_budget_the_size_stays():
    sizer = BatchSizer(timeout=8, limit=100)  # budget 2 s
    sizer.measured(5, 1.5)
    assert sizer.size == 5


def test_a_short_last_batch_does_not_make_it_grow():
    sizer = BatchSizer(timeout=30, limit=100)
    sizer.measured(2, 0.01)  # the last two items of a plan batch, answered at once
    assert sizer.size == START
    sizer.measured(2, 20.0)  # but a slow one makes it shrink all the same
    assert sizer.size == 1


def test_it_never_exceeds_the_limit_nor_goes_below_one():
    sizer = BatchSizer(timeout=30, limit=3)
    assert sizer.size == 3
    sizer.measured(3, 0.0)  # faster than the clock can tell
    assert sizer.size == 3
    sizer.measured(3, 1000.0)
    assert sizer.size == 1
    sizer.measured(1, 1000.0)
    assert sizer.size == 1


def test_nonsense_is_refused():
    with pytest.raises(ValueError):
        BatchSizer(timeout=0, limit=10)
    with pytest.raises(ValueError):
        BatchSizer(timeout=10, limit=0)


def test_a_fast_answer_never_grows_a_batch_past_the_slowest_pace_seen():
    # Kodi may answer a batch before carrying it out; the next batch then waits behind
    # that work. Once a pace of 0.1 s a call was seen, a 2 s timeout (0.5 s budget) allows
    # five calls a batch, however fast later answers come.
    sizer = BatchSizer(timeout=2.0, limit=100, start=5)
    sizer.measured(5, 0.5)  # 0.1 s a call: at the budget
    assert sizer.size == 5
    for _ in range(5):
        sizer.measured(sizer.size, 0.01)  # answered at once
    assert sizer.size == 5
