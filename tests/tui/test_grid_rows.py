"""The grid's row cache and which pages it reads (widgets/grid_rows.py), without a screen."""

from __future__ import annotations

from mbxtui.tui.widgets.grid_rows import PAGE_SIZE, RowCache, pages_near


def test_pages_near_the_screen_are_its_own_and_half_a_page_either_side():
    assert pages_near(0, 20) == {0}  # rows 0-19, and 50 below: still page 0
    assert pages_near(0, 60) == {0, 1}  # 50 rows below row 59 reach page 1
    assert pages_near(PAGE_SIZE * 10 + 60, 20) == {10, 11}  # rows 1060-1079; 1010-1129
    assert pages_near(PAGE_SIZE * 10 + 30, 10) == {9, 10}  # rows 1030-1039; 980-1090
    # What paging or a jump queued before the reads started is not among them.
    assert not pages_near(PAGE_SIZE * 500, 40) & {0, 1, 2, 250}


def test_rows_being_read_are_not_asked_for_again_and_a_stored_row_is_not_wanted():
    cache = RowCache()
    assert cache.wanted([1, 2, 3]) == [1, 2, 3]
    cache.start_reading([1, 2])
    assert cache.reading and cache.wanted([1, 2, 3]) == [3]
    cache.abandon([2])  # its read failed
    assert cache.wanted([1, 2, 3]) == [2, 3]
