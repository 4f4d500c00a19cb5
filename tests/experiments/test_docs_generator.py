"""The docs generator: blocks replaced between their markers, bulky arrays dropped."""
import pytest

from nettrim.errors import NettrimError
from nettrim.experiments import docs


def test_render_replaces_only_the_named_blocks():
    text = ("intro\n<!-- BEGIN experiment:a -->\nold a\n<!-- END experiment:a -->\nmiddle\n"
            "<!-- BEGIN experiment:b -->\nold b\n<!-- END experiment:b -->\nend\n")
    out = docs.render(text, {"a": "new a", "b": "new b\nline"})
    assert out == ("intro\n<!-- BEGIN experiment:a -->\nnew a\n<!-- END experiment:a -->\n"
                   "middle\n<!-- BEGIN experiment:b -->\nnew b\nline\n<!-- END experiment:b -->\n"
                   "end\n")
    assert docs.render(out, {"a": "new a", "b": "new b\nline"}) == out  # idempotent


def test_render_refuses_a_block_without_data():
    with pytest.raises(NettrimError):
        docs.render("<!-- BEGIN experiment:x -->\n<!-- END experiment:x -->\n", {})


def test_slim_drops_per_trial_arrays_at_any_depth():
    payload = {"draws": 5, "runs": [{"cells": [{"rate": 0.5, "errors": [1e-9, 2.0]}],
                         "curves": {"a": {"mean": [1.0], "draws": [[1.0, 1.0]]}}}]}
    assert docs.slim(payload) == {"draws": 5, "runs": [{"cells": [{"rate": 0.5}],
                                            "curves": {"a": {"mean": [1.0]}}}]}
