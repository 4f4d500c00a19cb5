"""Hard thresholding: exact top-k per layer and globally."""
import pytest
import torch

from nettrim.errors import NettrimError
from nettrim.pruners.threshold import global_threshold, keep_count, threshold_layer


def _nnz(w, b=None):
    return int(torch.count_nonzero(w)) + (0 if b is None else int(torch.count_nonzero(b)))


def test_keep_count_rounds_and_validates():
    assert keep_count(100, 0.9) == 10
    assert keep_count(10, 0.0) == 10
    assert keep_count(7, 0.5) == 4  # round(3.5) -> 4 (half to even)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(NettrimError):
            keep_count(10, bad)


@pytest.mark.parametrize("include_bias", [True, False])
def test_threshold_keeps_exactly_the_k_largest(include_bias):
    torch.manual_seed(0)
    w, b = torch.randn(7, 11), torch.randn(7)
    w0, b0 = w.clone(), b.clone()
    k = 23
    nw, nb = threshold_layer(w, b, k, include_bias=include_bias)
    assert torch.equal(w, w0) and torch.equal(b, b0)  # inputs untouched
    flat = torch.cat([w.reshape(-1), b]) if include_bias else w.reshape(-1)
    new = torch.cat([nw.reshape(-1), nb]) if include_bias else nw.reshape(-1)
    kept = new != 0
    assert int(kept.sum()) == k
    assert torch.equal(new[kept], flat[kept])  # survivors unchanged
    assert flat.abs()[kept].min() >= flat.abs()[~kept].max()
    if not include_bias:
        assert torch.equal(nb, b)


def test_threshold_ties_are_deterministic_and_bias_none():
    w = torch.ones(3, 4)
    nw, nb = threshold_layer(w, None, 5)
    assert nb is None
    assert torch.equal(nw.reshape(-1) != 0, torch.arange(12) < 5)  # ties to the lower index
    assert _nnz(*threshold_layer(w, None, 0)) == 0
    assert torch.equal(threshold_layer(w, None, 12)[0], w)
    assert _nnz(*threshold_layer(w, None, torch.tensor(3).numpy()[()])) == 3  # numpy integer


def test_threshold_rejects_bad_arguments():
    w, b = torch.randn(3, 4), torch.randn(3)
    with pytest.raises(NettrimError):
        threshold_layer(w, b, 16)
    with pytest.raises(NettrimError):
        threshold_layer(w, b, -1)
    with pytest.raises(NettrimError):
        threshold_layer(w, torch.randn(4), 3)
    with pytest.raises(NettrimError):
        threshold_layer(w, b, 2.5)


@pytest.mark.parametrize("include_bias", [True, False])
def test_global_threshold_one_cutoff_and_exact_total(include_bias):
    torch.manual_seed(1)
    params = [(torch.randn(20, 30), torch.randn(20)), (3 * torch.randn(10, 20), None),
              (0.1 * torch.randn(5, 10), torch.randn(5))]
    out = global_threshold(params, 0.8, include_bias=include_bias)
    def flat(ps):
        return torch.cat([torch.cat([w.reshape(-1)] + ([b] if include_bias and b is not None else []))
                          for w, b in ps])
    before, after = flat(params), flat(out)
    kept = after != 0
    assert int(kept.sum()) == keep_count(before.numel(), 0.8)
    assert before.abs()[kept].min() >= before.abs()[~kept].max()
    assert torch.equal(after[kept], before[kept])
    for (w, b), (nw, nb) in zip(params, out):
        assert nw.shape == w.shape and (nb is None) == (b is None)
        if b is not None and not include_bias:
            assert torch.equal(nb, b)


def test_global_threshold_rejects_bad_arguments():
    with pytest.raises(NettrimError):
        global_threshold([], 0.5)
    with pytest.raises(NettrimError):
        global_threshold([(torch.randn(2, 2), None)], 1.0)
