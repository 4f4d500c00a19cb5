"""FeTa DC pruning: DCA monotonicity, lambda and sparsity control, quality against thresholding."""
import math

import pytest
import torch

from nettrim.errors import NettrimError
from nettrim.pruners.dc import dc_layer, dc_layer_at_sparsity, dc_objective, soft_threshold
from nettrim.pruners.threshold import keep_count, threshold_layer


def _teacher(P=2000, N=50, M=20, seed=0):
    """A dense ReLU teacher layer on correlated, non-negative (ReLU-like) inputs."""
    g = torch.Generator().manual_seed(seed)
    X = torch.relu(torch.randn(P, 8, generator=g) @ torch.randn(8, N, generator=g)
                   + 0.3 * torch.randn(P, N, generator=g))
    W = torch.randn(M, N, generator=g) / math.sqrt(N)
    b = 0.1 * torch.randn(M, generator=g)
    return X, W, b, torch.relu(X @ W.T + b)


def _zeros(w, b):
    return int((w == 0).sum()) + (0 if b is None else int((b == 0).sum()))


def _out_error(X, Y, w, b):
    return float((torch.relu(X @ w.T + b) - Y).norm() / Y.norm())


@pytest.fixture(scope="module")
def teacher():
    return _teacher()


def test_soft_threshold_is_the_l1_prox_with_exact_zeros():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    out = soft_threshold(v, 0.5)
    assert torch.equal(out, torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))
    assert not bool(torch.signbit(out[out == 0]).any())  # +0.0, not -0.0


@pytest.mark.parametrize("relu", [True, False])
def test_objective_decreases_over_outer_iterations(teacher, relu):
    X, W, b, Y = teacher
    target = Y if relu else X @ W.T + b
    history = []
    w, nb = dc_layer(W, b, X, target, 0.1, relu=relu, outer=4, history=history)
    assert len(history) == 5
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(history, history[1:]))
    assert history[-1] < 0.95 * history[0]
    assert history[-1] == pytest.approx(dc_objective(w, nb, X, target, 0.1, relu=relu), rel=1e-5)


def test_larger_lambda_gives_more_zeros(teacher):
    X, W, b, Y = teacher
    zeros = [_zeros(*dc_layer(W, b, X, Y, lam)) for lam in (0.01, 0.1, 1.0)]
    assert zeros[0] < zeros[1] < zeros[2]
    assert _zeros(*dc_layer(W, b, X, Y, 1e-6)) == 0


def test_zero_lambda_keeps_an_exact_linear_fit():
    X, W, b, _ = _teacher(P=500, N=10, M=3)
    Y = X @ W.T + b
    w, nb = dc_layer(W, b, X, Y, 0.0, relu=False)
    assert torch.allclose(w, W, atol=1e-5) and torch.allclose(nb, b, atol=1e-5)


def test_search_lands_within_tol_and_beats_thresholding(teacher):
    X, W, b, Y = teacher
    W0 = W.clone()
    total = W.numel() + b.numel()
    w, nb, info = dc_layer_at_sparsity(W, b, X, Y, 0.7, tol=0.01)
    assert torch.equal(W, W0)
    assert info["reached"] and abs(info["dc_sparsity"] - 0.7) <= 0.01
    assert info["solves"] <= 12 and info["lambda"] > 0
    nnz = total - _zeros(w, nb)
    assert nnz <= keep_count(total, 0.7)  # exact: thresholded down to the count, never above
    assert info["sparsity"] == pytest.approx(1 - nnz / total)
    tw, tb = threshold_layer(W, b, nnz)
    assert _out_error(X, Y, w, nb) < 0.8 * _out_error(X, Y, tw, tb)


def test_exact_thresholds_to_the_count_and_can_be_turned_off(teacher):
    X, W, b, Y = teacher
    total = W.numel() + b.numel()
    loose = dict(tol=0.2, max_search=1)  # one solve: whatever lambda0 gives
    w, nb, info = dc_layer_at_sparsity(W, b, X, Y, 0.9, exact=False, **loose)
    assert info["sparsity"] == pytest.approx(info["dc_sparsity"])
    assert total - _zeros(w, nb) > keep_count(total, 0.9)  # this instance: lambda0 undershoots
    w2, nb2, info2 = dc_layer_at_sparsity(W, b, X, Y, 0.9, exact=True, **loose)
    assert info2["thresholded"] and total - _zeros(w2, nb2) == keep_count(total, 0.9)
    assert info2["sparsity"] == pytest.approx(1 - keep_count(total, 0.9) / total)
    kept = w2 != 0
    assert torch.equal(w2[kept], w[kept])  # survivors of the DC solution unchanged


def test_warm_started_search_returns_a_valid_layer(teacher):
    X, W, b, Y = teacher
    total = W.numel() + b.numel()
    w, nb, info = dc_layer_at_sparsity(W, b, X, Y, 0.6, warm_start=True, max_search=4)
    assert 1 <= info["solves"] <= 4
    assert total - _zeros(w, nb) <= keep_count(total, 0.6)


def test_step_is_capped_so_a_huge_step_does_not_diverge(teacher):
    X, W, b, Y = teacher
    history = []
    w, nb = dc_layer(W, b, X, Y, 0.1, step=10.0, history=history)
    assert all(math.isfinite(f) for f in history) and history[-1] < history[0]
    assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(nb).all())


def test_same_seed_same_result_and_no_bias(teacher):
    X, W, b, Y = teacher
    Yn = torch.relu(X @ W.T)
    a = dc_layer(W, None, X, Yn, 0.1, seed=3)
    c = dc_layer(W, None, X, Yn, 0.1, seed=3)
    assert a[1] is None and torch.equal(a[0], c[0])


def test_bad_arguments_raise(teacher):
    X, W, b, Y = teacher
    with pytest.raises(NettrimError):
        dc_layer(W, b, X, -Y - 1.0, 0.1)  # a ReLU layer's outputs are >= 0
    with pytest.raises(NettrimError):
        dc_layer(W, b, X[:, :10], Y, 0.1)
    with pytest.raises(NettrimError):
        dc_layer(W, b, X, Y[:, :3], 0.1)
    with pytest.raises(NettrimError):
        dc_layer(W, b, X, Y, 0.1, momentum=1.0)
    with pytest.raises(NettrimError):
        dc_layer_at_sparsity(W, b, X, Y, 1.0)
    with pytest.raises(NettrimError):
        dc_layer_at_sparsity(W, b, X, Y, 0.5, bogus=1)


def test_linear_case_solves_the_lasso():
    """relu=False is a Lasso; run long enough, the prox-SVRG answer matches a conic solver."""
    cp = pytest.importorskip("cvxpy")
    g = torch.Generator().manual_seed(0)
    P, N, M, lam = 400, 8, 2, 0.3
    X = torch.randn(P, N, generator=g, dtype=torch.float64)
    W = torch.randn(M, N, generator=g, dtype=torch.float64)
    b = torch.randn(M, generator=g, dtype=torch.float64)
    Y = X @ W.T + b + 0.5 * torch.randn(P, M, generator=g, dtype=torch.float64)
    A = torch.cat([X, torch.ones(P, 1, dtype=torch.float64)], dim=1).numpy()
    U = cp.Variable((N + 1, M))
    cp.Problem(cp.Minimize(cp.sum_squares(A @ U - Y.numpy()) / P + lam * cp.norm1(U))).solve()
    w, nb = dc_layer(W, b, X, Y, lam, relu=False, outer=30, step=None, batch_size=50)
    ours = torch.cat([w.T, nb.unsqueeze(0)])
    assert torch.allclose(ours, torch.from_numpy(U.value), atol=1e-5)
    assert torch.equal(ours == 0, torch.from_numpy(abs(U.value) < 1e-6))
