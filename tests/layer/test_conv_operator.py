"""Operator form of the conv layer program against the patch form and cvxpy."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nettrim.capture import ConvAdapter
from nettrim.layer import ADMMSettings, trim_layer
from nettrim.layer.conv_operator import ConvGeometry, ConvOperator, trim_conv_layer
from nettrim.layer.reference import solve_reference

TIGHT = ADMMSettings(rel_tol=1e-4, abs_tol=1e-7, max_iterations=20000)


def _layer(cin, cout, k, n, hw, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, **kw).eval()
    with torch.no_grad():
        conv.bias.uniform_(-0.3, 0.3)
    x = torch.randn(n, cin, hw, hw, generator=g)
    with torch.no_grad():
        z = conv(x)
    return conv, x, z


def _patches(conv, x, z):
    X, Z = ConvAdapter(conv, n_images=x.shape[0], max_rows=10 ** 9).matrices(x, z)
    return X, Z


def _l1(res):
    return float(res.weight.abs().sum() + (0 if res.bias is None else res.bias.abs().sum()))


def test_operator_and_adjoint():
    geom = ConvGeometry.from_options(dict(stride=2, padding=1, dilation=2), (3, 3))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 9, 8, generator=g, dtype=torch.float64)
    op = ConvOperator(geom.prepare(x), (4, 2, 3, 3), geom, True, 2.0, torch.float64)
    U = torch.randn(op.n_inputs, 4, generator=g, dtype=torch.float64)
    R = torch.randn(op.P, 4, generator=g, dtype=torch.float64)
    ref = F.conv2d(x / 2, U[:-1].T.reshape(4, 2, 3, 3), U[-1] / 2, stride=2, padding=1, dilation=2)
    torch.testing.assert_close(op.forward(U), ref.permute(0, 2, 3, 1).reshape(-1, 4))
    # <A U, R> = <U, A* R>
    torch.testing.assert_close((op.forward(U) * R).sum(), (U * op.adjoint(R)).sum())
    # the Gram matrix is A* A, and its diagonal the squared column norms
    K = op.gram()
    E = torch.eye(op.n_inputs, dtype=torch.float64)
    AtA = torch.stack([op.adjoint(op.forward(E[:, [j]]))[:, 0] for j in range(op.n_inputs)], 1)
    torch.testing.assert_close(K, AtA)
    torch.testing.assert_close(op.column_norms().square(), K.diagonal())


@pytest.mark.parametrize("w3_step", ["cg", "gram"])
def test_patch_and_operator_forms_reach_the_same_optimum(w3_step):
    conv, x, z = _layer(2, 4, 3, 8, 6, padding=1)
    Y = torch.relu(z)
    X, Z = _patches(conv, x, z)
    eps = 0.1 * float(Y.norm())
    patch = trim_layer(X, torch.relu(Z), eps, settings=TIGHT)
    oper = trim_conv_layer(x, Y, eps, dict(padding=1), tuple(conv.weight.shape), settings=TIGHT,
                           w3_step=w3_step)
    assert patch.status == "solved" and oper.status == "solved"
    assert oper.weight.shape == conv.weight.shape and oper.bias.shape == (4,)
    assert oper.discrepancy <= eps * (1 + TIGHT.feasibility_tol)
    assert abs(_l1(patch) - _l1(oper)) <= 1e-2 * _l1(patch)
    assert oper.info["rows"] == X.shape[0] == 8 * 36


def test_cascade_slack_agrees():
    conv, x, z = _layer(2, 4, 3, 6, 7, seed=1, stride=2, padding=1)
    Y = torch.relu(z)
    xhat = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        V = conv(xhat)
    Xh, Vm = _patches(conv, xhat, V)
    _, Z = _patches(conv, x, z)
    gap = float(((V - Y) * (Y > 0)).norm())
    eps = 1.05 ** 0.5 * gap
    geom = dict(stride=2, padding=1)
    patch = trim_layer(Xh, torch.relu(Z), eps, V=Vm, settings=TIGHT)
    oper = trim_conv_layer(xhat, Y, eps, geom, tuple(conv.weight.shape), V=V, settings=TIGHT,
                           w3_step="gram")
    assert patch.status == "solved" and oper.status == "solved"
    assert abs(_l1(patch) - _l1(oper)) <= 1e-2 * _l1(patch)
    # warm start from the original kernel (feasible in cascade) reaches the same optimum
    warm = trim_conv_layer(xhat, Y, eps, geom, tuple(conv.weight.shape), V=V, settings=TIGHT,
                           w3_step="cg",
                           warm_start=(conv.weight.detach(), conv.bias.detach()))
    assert warm.status == "solved" and abs(_l1(warm) - _l1(patch)) <= 1e-2 * _l1(patch)


@pytest.mark.parametrize("bias", [True, False])
def test_both_forms_agree_with_cvxpy(bias):
    conv, x, z = _layer(2, 3, 3, 4, 5, seed=2, stride=2, padding=1, dilation=1)
    if not bias:
        with torch.no_grad():
            z = z - conv.bias.reshape(1, -1, 1, 1)
    Y = torch.relu(z)
    X, Z = _patches(conv, x, z)
    eps = 0.15 * float(Y.norm())
    U = solve_reference(X, torch.relu(Z), eps, bias=bias)
    best = float(abs(U).sum())
    patch = trim_layer(X, torch.relu(Z), eps, bias=bias, settings=TIGHT)
    oper = trim_conv_layer(x, Y, eps, dict(stride=2, padding=1), tuple(conv.weight.shape),
                           bias=bias, settings=TIGHT)
    for res in (patch, oper):
        assert res.status == "solved"
        assert abs(_l1(res) - best) <= 1e-2 * best


def _both_forms(layer, g, **kw):
    """The patch form (``trim_layer`` on unfolded patches) and the operator form of one conv
    layer ``(conv, x, z)`` with padding 1, at relative eps ``g``."""
    conv, x, z = layer
    Y = torch.relu(z)
    X, Z = _patches(conv, x, z)
    eps = g * float(Y.norm())
    patch = trim_layer(X, torch.relu(Z), eps, settings=TIGHT, **kw)
    oper = trim_conv_layer(x, Y, eps, dict(padding=1), tuple(conv.weight.shape), settings=TIGHT, **kw)
    return patch, oper, eps


def test_per_neuron_budgets_agree():
    patch, oper, _ = _both_forms(_layer(2, 4, 3, 6, 6, seed=4, padding=1), 0.1, per_neuron=True)
    assert patch.status == "solved" and oper.status == "solved"
    assert abs(_l1(patch) - _l1(oper)) <= 1e-2 * _l1(patch)
    torch.testing.assert_close(oper.per_neuron_discrepancy, patch.per_neuron_discrepancy,
                               rtol=2e-2, atol=1e-3)


def test_logits_conv_without_relu_and_infeasible():
    conv, x, z = _layer(2, 3, 3, 4, 6, seed=3)
    res = trim_conv_layer(x, z, 0.1 * float(z.norm()), {}, tuple(conv.weight.shape), relu=False,
                          settings=TIGHT, w3_step="gram")
    assert res.status == "solved" and res.discrepancy <= 0.1 * float(z.norm()) * 1.001
    noisy = z + torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    bad = trim_conv_layer(x, noisy, 1e-3, {}, tuple(conv.weight.shape), relu=False)
    assert bad.status == "infeasible"


def test_validation_messages():
    conv, x, z = _layer(2, 3, 3, 2, 5)
    from nettrim.errors import NettrimError
    with pytest.raises(NettrimError, match="Y must have shape"):
        trim_conv_layer(x, torch.relu(z)[:, :, 1:], 0.1, {}, tuple(conv.weight.shape))
    with pytest.raises(NettrimError, match="unknown conv option"):
        trim_conv_layer(x, torch.relu(z), 0.1, dict(groups=2), tuple(conv.weight.shape))
    with pytest.raises(NettrimError, match="w3_step"):
        trim_conv_layer(x, torch.relu(z), 0.1, {}, tuple(conv.weight.shape), w3_step="lu")


def test_hinge_program_same_optimum_in_both_forms():
    conv, x, z = layer = _layer(2, 4, 3, 8, 6, seed=3, padding=1)
    patch, oper, eps = _both_forms(layer, 0.2, hinge=True)
    exact = trim_conv_layer(x, torch.relu(z), eps, dict(padding=1), tuple(conv.weight.shape),
                            settings=TIGHT)
    assert patch.status == "solved" and oper.status == "solved"
    assert oper.hinge_residual > 0
    assert (oper.discrepancy ** 2 + oper.hinge_residual ** 2) ** 0.5 <= eps * (1 + TIGHT.feasibility_tol)
    assert abs(_l1(patch) - _l1(oper)) <= 1e-2 * _l1(patch)
    assert _l1(oper) < _l1(exact)
