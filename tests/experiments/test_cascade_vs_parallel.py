"""Cascade vs parallel: cascade at least as sparse at equal discrepancy (a reduced quick run)."""
import json
from dataclasses import replace

import pytest
import torch

from nettrim.experiments import cascade_vs_parallel as cvp

NET = dict(arch="lenet-300-100", dataset="mnist", epochs=2, train_samples=4000)
PRESET = replace(cvp.QUICK, name="test", net=NET, epsilons=(0.05, 0.2), samples=200,
                 test_samples=1000, pool_epsilons=(), description="test")


@pytest.fixture(scope="module")
def quick(run_quick):
    return run_quick(cvp, PRESET, "cvp")


def test_interpolation_and_schedule_helpers():
    assert cvp.interpolate_sparsity(0.1, [0.01, 1.0], [0.5, 0.9]) == pytest.approx(0.7)
    assert cvp.interpolate_sparsity(2.0, [0.01, 1.0], [0.5, 0.9]) is None
    assert cvp.lpt_makespan([5, 1, 1], 2) == 5
    assert cvp.lpt_makespan([3, 3, 2, 2], 2) == 5
    est = cvp.estimated_speedup([4.0, 1.0, 1.0], workers=2)
    assert est["speedup_unlimited"] == pytest.approx(1.5)
    assert est["speedup_workers"] == pytest.approx(1.5)


def test_cascade_sparser_at_equal_discrepancy(quick):
    _, payload = quick
    run = payload["runs"][0]
    s = run["summary"]
    assert s["cascade_lower_discrepancy_same_eps"]
    c = run["comparison"]
    assert c["cascade_vs_parallel"]["n"] + c["parallel_vs_cascade"]["n"] >= 1
    assert s["cascade_sparser_at_equal_discrepancy"], c
    for m in cvp.MODES:
        sp = [q["sparsity"] for q in run["points"][m]]
        assert sp == sorted(sp) and sp[0] > 0.5  # larger eps, sparser
        assert all(st == "solved" for q in run["points"][m] for st in q["status"])
        # the pruned networks lose at most a few points of held-out accuracy at small g
        assert run["points"][m][0]["test_accuracy"] > run["test_accuracy_before"] - 3
        assert run["points"][m][0]["train_accuracy"] > 50


def test_timing_and_files(quick):
    out, payload = quick
    for q in payload["runs"][0]["points"]["parallel"]:
        e = q["speedup_estimate"]
        assert e["speedup_unlimited"] >= e["speedup_workers"] >= 1.0
        assert e["sequential"] == pytest.approx(sum(q["layer_seconds"]))
    assert (out / cvp.PNG_NAME).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / cvp.JSON_NAME).read_text())
    assert data["runs"][0]["summary"]["total_seconds"]["cascade"] > 0
    text = cvp.markdown_section(data)
    assert "cascade sparser at equal discrepancy" in text and "seeds improved" in text


def test_parallel_jobs_match_the_scheme():
    """The jobs the 2-process pool measurement solves are the parallel scheme's layer programs:
    solved in-process they give the layers' non-zero counts of ``prune(mode="parallel")``: the
    earlier core's (``nettrim.pruners``), whose layer solver ``trim_layer`` the jobs run."""
    from nettrim.layer import ADMMSettings
    from nettrim.pruners import NetTrim, prune
    from nettrim.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp-60-60").eval()
    x = torch.randn(64, 1, 28, 28)
    admm = dict(rel_tol=1e-2, max_iterations=100)  # same iterations both ways: same answer
    jobs = cvp.parallel_jobs(model, x, 0.2, admm)
    assert [j["name"] for j in jobs] == ["1", "3", "5"]
    assert [j["relu"] for j in jobs] == [True, True, False]
    solved = [cvp._solve_job(j) for j in jobs]
    ref = prune(model, x, method=NetTrim.paper(epsilon=0.2, settings=ADMMSettings(**admm)),
                mode="parallel", cleanup=False, progress=False)
    assert [s["nnz"] for s in solved] == [r.nnz_after for r in ref.report.layers]
