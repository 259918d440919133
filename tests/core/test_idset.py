"""IdSet behaves as a set of ids under any sequence of operations."""

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbxtui.core.idset import IdSet

ids = st.integers(min_value=0, max_value=3000)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ids),
        st.tuples(st.just("discard"), st.integers(min_value=-5, max_value=4000)),
        st.tuples(st.just("update"), st.lists(ids, max_size=50)),
        st.tuples(st.just("difference_update"), st.lists(st.integers(min_value=0, max_value=5000), max_size=50)),
        st.tuples(st.just("intersection_update"), st.lists(st.integers(min_value=0, max_value=5000), max_size=200)),
        st.tuples(st.just("clear"), st.none()),
    ),
    max_size=40,
)


@given(operations)
def test_every_operation_matches_a_python_set(steps):
    model: set[int] = set()
    ids_set = IdSet()
    for name, argument in steps:
        if name == "clear":
            model.clear()
            ids_set.clear()
        else:
            getattr(model, name)(argument)
            getattr(ids_set, name)(argument)
        assert ids_set == model
        assert len(ids_set) == len(model)
        assert list(ids_set) == sorted(model)
        assert bool(ids_set) == bool(model)


@given(st.lists(ids, max_size=100), st.lists(st.integers(min_value=-3, max_value=6000), max_size=100))
def test_keep_filters_in_the_given_order(members, order):
    ids_set = IdSet(array("q", members))
    assert list(ids_set.keep(x for x in order if x >= 0)) == [x for x in order if x >= 0 and x in set(members)]
    assert all((x in ids_set) == (x in set(members)) for x in order)


def test_negative_or_non_integer_ids_are_refused():
    ids_set = IdSet()
    with pytest.raises(ValueError, match="never negative"):
        ids_set.update([3, -1])
    with pytest.raises(ValueError, match="not an id"):
        ids_set.add(-2)
    assert "3" not in ids_set and not ids_set
