"""Layer-wise OBS: closed forms, the exact greedy trace, budgets and reconstruction quality."""
import math

import pytest
import torch

from nettrim.errors import NettrimError
from nettrim.pruners.lobs import (allocate_removals, greedy_trace, inverse_spd, layer_hessian,
                                  lobs_layer, obs_update, refit_rows)
from nettrim.pruners.threshold import threshold_layer


def _correlated(P=600, N=30, M=12, rank=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(P, rank, generator=g) @ torch.randn(rank, N, generator=g)
    X = X + 0.3 * torch.randn(P, N, generator=g)
    W = torch.randn(M, N, generator=g) / math.sqrt(N)
    b = 0.1 * torch.randn(M, generator=g)
    return X.to(dtype), W.to(dtype), b.to(dtype)


def _rows(W, b):
    return W if b is None else torch.cat([W, b.unsqueeze(1)], dim=1)


def _recon_error(X, W, b, W2, b2):
    """||A W_new^T - A W^T||_F with A = [X, 1]."""
    A = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    return float((A @ (_rows(W2, b2) - _rows(W, b)).T).norm())


def _nnz(w, b):
    return int(torch.count_nonzero(w)) + (0 if b is None else int(torch.count_nonzero(b)))


def _naive_greedy(W, hinv, removable):
    """Reference: one row at a time, full downdate after every removal."""
    losses, order = [], []
    for w in W:
        H, alive, ls, os_ = hinv.clone(), removable.clone(), [], []
        for _ in range(int(removable.sum())):
            sal = (w * w / (2 * H.diagonal())).masked_fill(~alive, math.inf)
            q = int(sal.argmin())
            ls.append(float(sal[q]))
            os_.append(q)
            w, _ = obs_update(w, H, q)
            H = H - torch.outer(H[:, q], H[q, :]) / H[q, q]
            H[q, q] = 1.0  # removed coordinate: row/column are 0, keep the diagonal harmless
            alive[q] = False
        losses.append(ls)
        order.append(os_)
    return torch.tensor(losses, dtype=W.dtype), torch.tensor(order)


def test_obs_update_equals_least_squares_refit_by_hand():
    """Without damping, OBS removal of q == re-solving least squares on the other coordinates."""
    A = torch.tensor([[1.0, 0.2, -0.3], [0.1, 1.0, 0.4], [-0.2, 0.3, 1.0], [0.5, -0.4, 0.2],
                      [0.3, 0.1, -0.6]], dtype=torch.float64)
    w = torch.tensor([0.8, -0.05, 0.4], dtype=torch.float64)
    H = A.T @ A / A.shape[0]
    hinv = torch.linalg.inv(H)
    for q in range(3):
        new, loss = obs_update(w, hinv, q)
        assert new[q] == 0.0
        rest = [j for j in range(3) if j != q]
        sol = torch.linalg.lstsq(A[:, rest], A @ w).solution
        assert torch.allclose(new[rest], sol, atol=1e-12)
        # the saliency is the increase of 1/2 dw^T H dw
        dw = new - w
        assert loss == pytest.approx(float(0.5 * dw @ H @ dw), rel=1e-10)
    # lobs_layer (damp=0) removes the least salient coordinate and applies the same refit
    sal = w ** 2 / (2 * hinv.diagonal())
    q = int(sal.argmin())
    for greedy in (True, False):
        nw, nb = lobs_layer(w.unsqueeze(0), None, A, 2, damp=0.0, greedy=greedy)
        assert nb is None and nw[0, q] == 0.0
        assert torch.allclose(nw[0], obs_update(w, hinv, q)[0], atol=1e-12)


@pytest.mark.parametrize("greedy", [True, False])
def test_keep_all_returns_the_original_weights(greedy):
    X, W, b = _correlated()
    nw, nb = lobs_layer(W, b, X, W.numel() + b.numel(), greedy=greedy)
    assert torch.equal(nw, W) and torch.equal(nb, b)
    assert nw is not W


@pytest.mark.parametrize("greedy", [True, False])
@pytest.mark.parametrize("include_bias", [True, False])
def test_exact_count_and_inputs_untouched(greedy, include_bias):
    X, W, b = _correlated()
    W0, b0, X0 = W.clone(), b.clone(), X.clone()
    keep = 100
    nw, nb = lobs_layer(W, b, X, keep, greedy=greedy, include_bias=include_bias)
    assert torch.equal(W, W0) and torch.equal(b, b0) and torch.equal(X, X0)
    assert nw.shape == W.shape and nb.shape == b.shape and nw.dtype == W.dtype
    if include_bias:
        assert _nnz(nw, nb) == keep
    else:
        assert int(torch.count_nonzero(nw)) == keep and bool((nb != 0).all())


def test_blocked_greedy_trace_matches_the_naive_greedy():
    X, W, b = _correlated(P=300, N=10, M=5, dtype=torch.float64)
    H = layer_hessian(X, True, 1e-2)
    hinv = inverse_spd(H)
    rows = _rows(W, b)
    for removable in (torch.ones(11, dtype=torch.bool), torch.arange(11) < 10):
        ref_l, ref_o = _naive_greedy(rows, hinv, removable)
        for chunk, block in ((2, 3), (5, 64), (1, 1)):
            losses, order = greedy_trace(rows, hinv, removable, chunk, block)
            assert torch.equal(order, ref_o)
            assert torch.allclose(losses, ref_l, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("n_remove", [3, 25, 50])
def test_refit_equals_replaying_the_greedy_removals(n_remove):
    X, W, b = _correlated(P=300, N=10, M=6, dtype=torch.float64)
    H = layer_hessian(X, True, 1e-2)
    hinv = inverse_spd(H)
    rows = _rows(W, b)
    losses, order = greedy_trace(rows, hinv, torch.ones(11, dtype=torch.bool), 4)
    counts = allocate_removals(losses, n_remove)
    assert int(counts.sum()) == n_remove
    removed = torch.zeros_like(rows, dtype=torch.bool)
    ref = rows.clone()
    for m in range(rows.shape[0]):
        w, Hi = rows[m].clone(), hinv.clone()
        for q in order[m, :counts[m]].tolist():
            w, _ = obs_update(w, Hi, q)
            Hi = Hi - torch.outer(Hi[:, q], Hi[q, :]) / Hi[q, q]
            removed[m, q] = True
        ref[m] = w
    new = refit_rows(rows, H, hinv, removed, chunk=4)
    assert torch.allclose(new, ref, atol=1e-10)
    assert torch.equal(new == 0, removed)


def test_allocation_takes_prefixes_of_the_running_max():
    losses = torch.tensor([[1.0, 5.0, 2.0, 9.0], [3.0, 3.0, 4.0, 4.0]])
    # running max: [1, 5, 5, 9] and [3, 3, 4, 4]; the 4 cheapest: 1 | 3, 3, 4
    assert allocate_removals(losses, 4).tolist() == [1, 3]
    assert allocate_removals(losses, 0).tolist() == [0, 0]
    assert allocate_removals(losses, 8).tolist() == [4, 4]


@pytest.mark.parametrize("keep_frac", [0.5, 0.25, 0.1])
def test_greedy_reconstructs_better_than_one_shot_and_thresholding(keep_frac):
    X, W, b = _correlated(P=800, N=40, M=16, rank=6, seed=3)
    keep = int(keep_frac * (W.numel() + b.numel()))
    errors = {}
    for name, (nw, nb) in {
        "greedy": lobs_layer(W, b, X, keep, greedy=True),
        "one_shot": lobs_layer(W, b, X, keep, greedy=False),
        "threshold": threshold_layer(W, b, keep),
    }.items():
        assert _nnz(nw, nb) == keep
        errors[name] = _recon_error(X, W, b, nw, nb)
    assert errors["greedy"] <= errors["one_shot"] * (1 + 1e-6)
    assert errors["greedy"] <= errors["threshold"]
    assert errors["greedy"] < 0.9 * errors["threshold"]


def test_chunking_does_not_change_the_result():
    X, W, b = _correlated()
    a = lobs_layer(W, b, X, 90, chunk_size=1, block=7)
    c = lobs_layer(W, b, X, 90)
    assert torch.equal(a[0] == 0, c[0] == 0) and torch.equal(a[1] == 0, c[1] == 0)
    assert torch.allclose(a[0], c[0], atol=1e-4) and torch.allclose(a[1], c[1], atol=1e-4)


def test_bad_arguments_raise():
    X, W, b = _correlated(P=50, N=6, M=3)
    with pytest.raises(NettrimError):
        lobs_layer(W, b, X, 22)  # more than 3 * 7
    with pytest.raises(NettrimError):
        lobs_layer(W, b, X[:, :5], 5)
    with pytest.raises(NettrimError):
        lobs_layer(W, torch.randn(4), X, 5)
    with pytest.raises(NettrimError):
        lobs_layer(W, b, X, 5, damp=-1.0)
    with pytest.raises(NettrimError):  # rank-deficient inputs without damping
        lobs_layer(W, None, torch.cat([X[:, :3], X[:, :3]], dim=1), 5, damp=0.0)
