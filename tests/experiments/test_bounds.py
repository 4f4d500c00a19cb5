"""Bounds experiment: every theorem bound holds on the pruning samples (a reduced quick run)."""
import json
import math
from dataclasses import replace

import pytest

from nettrim.experiments import bounds as bx

# small, shared with the other experiment tests through the session cache
NET = dict(dataset="mnist", epochs=2, train_samples=4000)
PRESET = replace(bx.QUICK, name="test",
                 nets=(dict(arch="lenet-300-100", **NET), dict(arch="mlp-300-300-300", **NET)),
                 epsilons=(0.2,), samples=128, test_samples=128, description="test")


@pytest.fixture(scope="module")
def quick(run_quick):
    return run_quick(bx, PRESET, "bounds")


def test_cascade_bound_helpers_agree_with_module():
    from nettrim.pruners.bounds import cascade_bound, cascade_bound_normalized, parallel_bound

    assert parallel_bound([1.0, 1.0], [2.0, 3.0]) == pytest.approx(1 + 3 * 1)
    assert cascade_bound(1.0, 1.21, [2.0, 3.0]) == pytest.approx(1.1 * 2 * 1.1 * 3)
    assert cascade_bound_normalized(1.0, 1.21, 3) == pytest.approx(1.21)


def test_theorem_bounds_hold_on_training_samples(quick):
    _, payload = quick
    assert payload["runs"][0]["summary"]["all_theorems_hold_train"]
    for net in payload["runs"][0]["nets"]:
        for run in net["runs"]:
            for mode, a in run["modes"].items():
                assert a["solved"], (net["arch"], mode, [r["status"] for r in a["layers"]])
                for row in a["layers"]:
                    for name in bx.THEOREMS[mode]:
                        assert row["holds_train"][name], (net["arch"], mode, row["layer"], name,
                                                          row["bounds"][name], row["e_train"])
                # Proposition 1 is tight in practice: the solver uses its budget
                if mode == "parallel":
                    assert all(0.5 < r["tightness_train"]["prop1"] <= 1 for r in a["layers"])
                assert a["output_error_train"] <= a["output_bounds"][
                    "recursive" if mode == "parallel" else "general"]


def test_cascade_error_below_parallel_at_same_eps(quick):
    _, payload = quick
    for net in payload["runs"][0]["nets"]:
        for run in net["runs"]:
            m = run["modes"]
            assert m["cascade"]["output_error_train"] < m["parallel"]["output_error_train"]


def test_files_and_paper_forms_reported(quick):
    out, payload = quick
    js, png = out / bx.JSON_NAME, out / bx.PNG_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["preset"] == "test" and len(data["runs"][0]["nets"]) == 2
    for row in data["runs"][0]["summary"]["table"]:
        assert isinstance(row["paper_form_holds_train"], bool)
        assert math.isfinite(row["bound_paper_rel"]) and row["bound_general_rel"] > 0
    assert "| lenet-300-100 |" in bx.markdown_section(data)
