"""The walk both the mailbox grid and the Activities screen use for a filter's first matches."""

from __future__ import annotations

from mbxtui.core.walks import first_matches


def evens(batch: range) -> list[int]:
    return [number for number in batch if number % 2 == 0]


def test_the_walk_stops_at_what_it_wants_or_at_the_end():
    batches = [range(0, 5), range(5, 10), range(10, 15)]
    assert first_matches(batches, evens, 4) == ([0, 2, 4, 6], False, range(5, 10))
    assert first_matches(batches, evens, 100) == ([0, 2, 4, 6, 8, 10, 12, 14], True, range(10, 15))
    assert first_matches([], evens, 4) == ([], True, None)


def test_the_walk_gives_up_when_out_of_time_or_told_to_stop():
    batches = [range(0, 5), range(5, 10), range(10, 15)]
    assert first_matches(batches, evens, 100, seconds=0) == ([0, 2, 4], False, range(0, 5))
    asked = []
    assert first_matches(batches, evens, 100, stop=lambda: asked.append(1) or len(asked) == 2) == (
        [0, 2, 4, 6, 8], False, range(5, 10))
