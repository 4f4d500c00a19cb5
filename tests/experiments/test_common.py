"""The multi-seed helpers: stacking per-seed payloads, mean ± half-range."""
import pytest

from nettrim.errors import NettrimError
from nettrim.experiments.common import count_true, mean_spread, pm, seed_list, stack


def test_seed_list_and_bad_count():
    assert seed_list(5, 3) == [5, 6, 7]
    with pytest.raises(NettrimError):
        seed_list(0, 0)


def test_stack_turns_leaves_into_lists():
    runs = [dict(a=1.0, b=dict(c=[1, 2], ok=True), name="x", rows=[1]),
            dict(a=3.0, b=dict(c=[5, 6], ok=False), name="y", rows=[1, 2])]
    st = stack(runs)
    assert st["a"] == [1.0, 3.0]
    assert st["b"]["c"] == [[1, 5], [2, 6]]
    assert st["b"]["ok"] == [True, False]
    assert st["name"] == "x"
    assert st["rows"] == [[1], [1, 2]]  # unequal lengths: kept per item


def test_mean_and_half_range():
    assert mean_spread([1.0, 2.0, 6.0]) == (3.0, 2.5)
    assert pm([1.0, 2.0, 6.0], ".1f") == "3.0 ± 2.5"
    assert pm([-1.0, 1.0], "+.1f") == "+0.0 ± 1.0"
    assert pm([0.5], ".1f", 100) == "50.0"
    assert count_true([True, False, True]) == "2 of 3"
