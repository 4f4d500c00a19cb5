"""SparseGPT's blocked OBS pass and Wanda's scores from the Gram statistics, and the stream
that feeds them: a linear-program layer (conv included) keeps no rows however many there are."""
import torch
from torch import nn

from nettrim.program.stats import stats_of_rows, with_ones
from nettrim.solvers.obs import inverse_factor, sparsegpt_pass, wanda_scores
from nettrim.stream import Batches, RowPlan, layer_stats


def correlated(P=600, N=40, M=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(P, N, generator=g, dtype=torch.float64) @ torch.randn(N, N, generator=g, dtype=torch.float64)
    return with_ones(X), torch.randn(N + 1, M, generator=g, dtype=torch.float64)


def test_obs_pass_removes_the_exact_count_with_less_error_than_magnitude():
    A, U = correlated()
    G = A.T @ A
    out = sparsegpt_pass(U, inverse_factor(G, 1e-4), sparsity=0.6, blocksize=16)
    assert int((out.U == 0).sum()) == round(0.6 * U.numel())
    magnitude = U * (U.abs() > U.abs().flatten().kthvalue(round(0.6 * U.numel())).values)
    error = lambda V: float((A @ (V - U)).norm())
    assert error(out.U) < 0.9 * error(magnitude)
    assert abs(error(out.U) ** 2 - out.loss) < 0.05 * out.loss  # removed saliencies add up to the error


def test_obs_threshold_rule_and_wanda_scores():
    A, U = correlated(seed=1)
    G = A.T @ A
    R = inverse_factor(G, 1e-4)
    loose, tight = (sparsegpt_pass(U, R, tau=t, blocksize=16) for t in (1e4, 1e2))
    assert int((loose.U == 0).sum()) > int((tight.U == 0).sum()) > 0
    torch.testing.assert_close(wanda_scores(U, G), U.abs() * A.norm(dim=0, keepdim=True).T)


def test_linear_program_layers_stream_without_holding_rows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    images = torch.randn(64, 3, 8, 8)
    for name, n_in in (("0", 28), ("3", 289)):
        stats = layer_stats(model, name, Batches(images, 16, model), relu=False, hold=False,
                            plan=RowPlan("auto", None, 0))
        assert stats.A is None and stats.gram.shape == (n_in, n_in)
        assert stats.rows_total == (64 * 36 if name == "0" else 64)
    direct = nn.functional.unfold(images, 3).transpose(1, 2).reshape(-1, 27)
    A = with_ones(direct.double())
    Z = (model[0](images).permute(0, 2, 3, 1).reshape(-1, 8)).detach().double()
    torch.testing.assert_close(stats_of_rows(A, Z, bias=True).gram,
                               layer_stats(model, "0", Batches(images, 16, model), relu=False, hold=False,
                                           plan=RowPlan("auto", None, 0)).gram)
