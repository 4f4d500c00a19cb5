"""Sample-complexity experiment: the quick preset end to end (about 20-30 s on 2 cores)."""
import json
import math

import numpy as np
import pytest

from nettrim.experiments import sample_complexity as sc


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample_complexity")
    payload = sc.main(out, preset="quick", seed=0, progress=False)
    return out, payload


def test_lp_recovers_sparse_neuron():
    X, w0, y = sc.make_instance(N=60, s=3, P=60, seed=1, trial=0)
    w = sc.solve_exact_lp(X, y)
    assert w.shape == (60,)
    assert sc.relative_error(w, w0) < sc.SUCCESS_TOL
    on = y > 0
    assert np.allclose(X[on] @ w, y[on], atol=1e-7)
    assert (X[~on] @ w <= 1e-7).all()


def test_lp_all_inactive_returns_zero():
    X = np.random.default_rng(0).standard_normal((5, 8))
    assert np.allclose(sc.solve_exact_lp(X, np.zeros(5)), 0)


def test_fit_p50_interpolates_last_upward_crossing():
    assert sc.fit_p50([10, 20, 30, 40], [0.0, 0.2, 0.8, 1.0]) == pytest.approx(25.0)
    assert sc.fit_p50([10, 20, 30, 40], [0.6, 0.2, 0.4, 1.0]) == pytest.approx(30 + 10 / 6)
    assert sc.fit_p50([10, 20], [0.6, 1.0]) is None  # crossing below the grid
    assert sc.fit_p50([10, 20], [0.0, 0.4]) is None  # never reached


def test_quick_preset_phase_transition(quick):
    _, payload = quick
    for r in payload["runs"][0]["results"]:
        N = r["N"]
        high = [c for c in r["cells"] if c["P"] >= 6 * c["s"] * math.log(N / c["s"]) - 1]
        low = [c for c in r["cells"] if c["P"] <= 0.5 * c["s"] * math.log(N / c["s"]) + 1e-9]
        assert high and low
        assert all(c["rate"] >= 0.9 for c in high), [(c["s"], c["P"], c["rate"]) for c in high]
        assert all(c["rate"] <= 0.1 for c in low), [(c["s"], c["P"], c["rate"]) for c in low]
        c = r["fit"]["c_median"]
        assert c is not None and 0.5 < c < 6


def test_quick_preset_files(quick):
    out, payload = quick
    js, png = out / sc.JSON_NAME, out / sc.PNG_NAME
    assert js.exists() and png.exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["preset"] == "quick"
    res = data["runs"][0]["results"][0]
    assert res["cells"][0]["trials"] == payload["runs"][0]["results"][0]["trials"]
    assert "P50 / (11s+7) log N" in sc.markdown_section(data)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_admm_agrees_with_lp_where_recovered(quick):
    _, payload = quick
    admm = payload["runs"][0]["results"][0]["admm"]
    recovered = [i for i in admm["instances"] if i["lp_recovered"]]
    assert recovered
    for i in recovered:
        assert i["admm_vs_lp"] < 1e-2 and i["admm_near_lp"], i
    # well above the transition ADMM converges and recovers w0 too
    top = max(i["ratio"] for i in admm["instances"])
    easy = [i for i in admm["instances"] if i["ratio"] == top]
    assert easy and all(i["lp_recovered"] and i["admm_recovered"] for i in easy), easy


def test_nips_count_and_scaling():
    assert sc.nips_count(100, 2) == pytest.approx(29 * math.log(100))
    fake = [dict(N=N, fit=dict(per_s=[dict(s=s, P50=3 * sc.s_log_n_over_s(N, s)) for s in (2, 5)]))
            for N in (50, 200)]
    out = sc.scaling(fake)
    # P50 = 3 s log(N/s) exactly: the first form collapses perfectly with constant 3
    assert out["forms"]["s log(N/s)"]["constant"] == pytest.approx(3)
    assert out["forms"]["s log(N/s)"]["collapse"] == pytest.approx(1)
    assert out["forms"]["(11s+7) log N"]["collapse"] > 1.2


def test_quick_preset_compares_both_forms(quick):
    _, payload = quick
    sc_ = payload["runs"][0]["scaling"]
    assert {r["N"] for r in sc_["rows"]} == {50, 100}
    # the NIPS count is a sufficient condition far above where recovery starts
    assert 0 < sc_["forms"]["(11s+7) log N"]["constant"] < 1


def test_pooled_fit_of_one_seed_is_that_seed(quick):
    _, payload = quick
    assert sc.pooled(payload["runs"])["rows"] == payload["runs"][0]["scaling"]["rows"]
