"""``nettrim.verify.verify`` on honest reports (every claim recomputed and holding) and on the
hostile cases of a user who edits the weights, the report, or both: each fails, naming the
layer and the number, never "hold"."""
import copy
import math

import pytest
import torch
from torch import nn

from verify_helpers import Pruned, as_json, pruned_random, random_inputs, random_mlp, refused
from nettrim import api
from nettrim.methods import NetTrim, SparseGPT
from nettrim.verify import EXIT_CODES, Verification, verify


def failing(v: Verification, name: str) -> list[str]:
    return [c.quantity for c in v.failures if c.name == name]


# -- honest reports ---------------------------------------------------------------------------
def test_an_honest_report_holds_in_every_number(pruned):
    v = pruned.verify()
    assert v.status == "hold" and v.exit_code == 0, v.summary()
    assert all(c.holds for c in v.checks)
    layers = pruned.report["layers"]
    assert v.claims == len(layers) + 1  # every layer certified, and the network bound
    # every layer's claim and the network's inequality are among the checks, each holding
    claims = [c for c in v.checks if c.relation == "<="]
    assert {c.name for c in claims} == {r["name"] for r in layers} | {"network"}
    assert all(c.value <= c.limit for c in claims)


def test_the_recomputed_numbers_do_not_depend_on_the_batching(cascade):
    v = cascade.verify(batch_size=37)
    assert v.status == "hold", v.summary()
    batches = list(cascade.inputs.split(100))
    assert cascade.verify(inputs=batches).status == "hold"


def test_the_report_object_itself_is_accepted(pruned):
    assert pruned.verify(report=pruned.prune_report).status == "hold"


def test_a_report_without_claims_has_its_own_status():
    honest = pruned_random(SparseGPT(), sparsity=0.6)
    v = honest.verify()
    assert v.status == "no_claims" and v.exit_code == EXIT_CODES["no_claims"] == 4
    assert v.claims == 0 and all(c.holds for c in v.checks)
    assert "certifies nothing" in v.summary()
    # ... and its numbers are checked all the same
    edited = honest.edited(lambda r: r["layers"][0].update(nnz_after=r["layers"][0]["nnz_after"] - 1))
    assert failing(refused(honest, report=edited), "0") == ["nnz_after"]
    # a certificate added to a method that makes no claim
    forged = honest.edited(lambda r: r["layers"][1].update(certified=True))
    assert "certified" in failing(refused(honest, report=forged), "2")
    # a method that prunes to a count only, recorded without one
    untargeted = honest.edited(lambda r: r["run"].update(sparsity=None))
    assert any("count target" in q for q in failing(refused(honest, report=untargeted), "0"))


def test_a_count_target_is_certified_at_the_value_it_reached():
    honest = pruned_random(NetTrim(support="obs"), sparsity=0.8)
    v = honest.verify()
    assert v.status == "hold", v.summary()
    assert {r["certificate"]["rule"] for r in honest.report["layers"]} == {"measured"}
    told = next(c for c in v.checks if c.quantity.startswith("certificate.epsilon"))
    assert "the recorded eps is the claim" in told.quantity
    # calling a measured eps a tolerance is refused: the run had a count target
    edited = honest.edited(lambda r: r["layers"][0]["certificate"].update(rule="tolerance"))
    assert any("rule" in q for q in failing(refused(honest, report=edited), "0"))


def test_one_ball_per_neuron_follows_the_rule_per_neuron():
    honest = pruned_random(NetTrim(epsilon=0.3, per_neuron=True), mode="parallel")
    assert honest.verify().status == "hold"
    radii = honest.report["layers"][0]["certificate"]["radii"]
    assert len(radii) == 40

    def shuffle(r):  # the same layer total, moved between neurons
        cert = r["layers"][0]["certificate"]
        cert["radii"] = cert["radii"][1:] + cert["radii"][:1]

    v = refused(honest, report=honest.edited(shuffle))
    assert "certificate.radii (NetTrim's rule, per neuron)" in failing(v, "0")
    short = honest.edited(lambda r: r["layers"][0]["certificate"].update(radii=radii[:3]))
    assert "certificate.radii: one radius per neuron" in failing(refused(honest, report=short), "0")


def test_a_folded_batchnorm_is_verified_as_it_was_pruned():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(40, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    honest = pruned_random(NetTrim(epsilon=0.3), mode="cascade", model=model, x=x)
    v = honest.verify()
    assert v.status == "hold", v.summary()


def test_a_run_on_some_layers_is_verified_with_the_others_skipped():
    honest = pruned_random(NetTrim(epsilon=0.3), run=api.RunOptions(layers=["2"], progress=False))
    v = honest.verify()
    assert v.status == "hold" and honest.report["skipped"] == ["0", "4"] and honest.report["bound"] is None
    assert v.claims == 1
    unskipped = honest.edited(lambda r: r.update(skipped=["0"]))
    assert "skipped" in failing(refused(honest, report=unskipped), "network")


def test_the_result_is_plain_json(cascade):
    import json

    v = cascade.verify()
    assert json.loads(json.dumps(v.to_dict(), allow_nan=False))["status"] == "hold"


# -- the weights tampered with ----------------------------------------------------------------
def test_the_dense_weights_put_back_fail_at_the_first_layer(cascade):
    v = refused(cascade, model=copy.deepcopy(cascade.original))
    first = v.first_failure
    assert first.name == "1" and first.relation == "sha256" and "differs" in first.line()
    nnz = next(c for c in v.failures if c.name == "1" and c.quantity == "nnz_after")
    assert nnz.value == 784 * 32 + 32 and nnz.limit == cascade.report["layers"][0]["nnz_after"]
    assert "pruned" in {c.name for c in v.failures}  # the model's state digest too


def test_one_extra_nonzero_weight_fails(pruned):
    def one_more(w):
        idx = int((w.reshape(-1) == 0).nonzero()[0])
        w.view(-1)[idx] = 1e-3

    v = refused(pruned, model=pruned.tampered("3", one_more))
    nnz = next(c for c in v.failures if c.quantity == "nnz_after" and c.name == "3")
    assert nnz.value == nnz.limit + 1
    assert any(c.name == "network" and c.quantity == "nnz_after" for c in v.failures)


def test_tripled_weights_fail_even_with_the_original_pointing_at_them(cascade):
    tripled = cascade.tampered("1", lambda w: w.mul_(3))
    v = refused(cascade, model=tripled, original=tripled)
    assert v.first_failure.name == "original"
    assert v.first_failure.relation == "sha256"
    assert failing(v, "1")  # and the layer's numbers do not match either


def test_tripled_weights_fail_whatever_tolerance_the_report_states(pruned):
    tripled = pruned.tampered("1", lambda w: w.mul_(3))

    def loose_eps(r):  # every absolute eps 1e9, the relative one kept
        for layer in r["layers"]:
            layer["certificate"]["epsilon"] = 1e9

    v = refused(pruned, model=tripled, report=pruned.edited(loose_eps))
    assert any(q.startswith("certificate.epsilon") for q in failing(v, "1"))

    def loose_relative(r):  # the relative one too, and the limits that follow from it
        for layer in r["layers"]:
            cert = layer["certificate"]
            cert.update(relative_epsilon=1e9, epsilon=1e9 * layer["target_norm"], limit=1e12, bound_radius=1e12)

    v = refused(pruned, model=tripled, report=pruned.edited(loose_relative))
    assert any("NetTrim's rule" in q for q in failing(v, "1"))
    assert any(q.startswith("discrepancy") for q in failing(v, "1"))


def test_tripled_weights_under_a_report_that_claims_nothing_fail(pruned):
    tripled = pruned.tampered("1", lambda w: w.mul_(3))

    def disclaim(r):
        for layer in r["layers"]:
            layer["certified"] = False
            layer["certificate"]["holds"] = False
        r["bound"] = None

    v = refused(pruned, model=tripled, report=pruned.edited(disclaim))
    assert v.claims == 0 and v.status == "fail"  # not "no claims": the numbers do not match the weights
    assert any(q.startswith("discrepancy") for q in failing(v, "1"))


def test_weights_with_nan_or_another_shape_fail_without_recomputing(cascade):
    nan = cascade.tampered("3", lambda w: w.view(-1).__setitem__(0, math.nan))
    v = refused(cascade, model=nan)
    assert v.first_failure.name == "structure" and "NaN" in v.first_failure.quantity
    other = nn.Sequential(nn.Flatten(), nn.Linear(784, 30), nn.ReLU(), nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 10))
    v = refused(cascade, model=other)
    assert any(c.name == "structure" for c in v.failures)


def test_a_layer_of_another_class_with_the_same_tensors_fails(cascade):
    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    swapped = copy.deepcopy(cascade.model)
    layer = swapped[3]
    doubled = Doubled(layer.in_features, layer.out_features)
    doubled.load_state_dict(layer.state_dict())
    swapped[3] = doubled
    v = refused(cascade, model=swapped)
    assert v.first_failure.name == "structure" and "class" in v.first_failure.quantity


def test_another_draw_of_calibration_inputs_fails(cascade):
    other = torch.flip(cascade.inputs, dims=[0])  # the same images in another order
    v = refused(cascade, inputs=other)
    assert next(c for c in v.failures).name == "inputs"
    fewer = refused(cascade, inputs=cascade.inputs[:200])
    assert {"inputs"} <= {c.name for c in fewer.failures}


# -- the report edited, the weights honest ----------------------------------------------------
@pytest.mark.parametrize("path, change", [
    (("layers", 0, "discrepancy"), lambda v: v * 1.001),
    (("layers", 1, "certificate", "excess"), lambda v: v * 0.5),
    (("layers", 2, "certificate", "gap"), lambda v: v + 1.0),
    (("layers", 0, "rows"), lambda v: v - 1),
    (("sparsity",), lambda v: v + 1e-4),
    (("bound",), lambda v: v * 0.9),
    (("output_error",), lambda v: v * 1.01),
    (("layers", 1, "certificate", "tolerance"), lambda v: v * 10),
    (("layers", 0, "certificate", "inactive"), lambda v: "halfspace"),
    (("layers", 2, "certificate", "theta"), lambda v: 1.0),
    (("layers", 0, "status"), lambda v: "max_iterations"),
])
def test_one_edited_number_fails_naming_it(cascade, path, change):
    def edit(r):
        target = r
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = change(target[path[-1]])

    v = refused(cascade, report=cascade.edited(edit))
    assert any(path[-1] in c.quantity for c in v.failures), v.summary()


def test_a_method_whose_rule_gives_another_tolerance_fails(cascade):
    edited = cascade.edited(lambda r: r["method"].update(epsilon=0.5))
    v = refused(cascade, report=edited)
    assert v.first_failure.name == "1" and "NetTrim's rule" in v.first_failure.quantity


def test_the_summary_names_the_first_failure_in_one_line(cascade):
    edited = cascade.edited(lambda r: r["layers"][1].update(nnz_after=r["layers"][1]["nnz_after"] + 5))
    v = refused(cascade, report=edited)
    line = v.summary()
    assert line.startswith("FAIL: layer '3': nnz_after") and "\n" not in line
    d = v.to_dict()
    assert d["status"] == "fail" and d["exit_code"] == 1 and len(d["checks"]) == len(v.checks)


def test_bad_arguments_are_one_line_errors(cascade):
    assert "original must be" in refused(cascade, original="model.pt")
    assert "pruned must be" in refused(cascade, model=None)
    assert "batch_size" in refused(cascade, batch_size=0)
    assert "inputs" in refused(cascade, inputs="x.pt")
    assert "inputs" in refused(cascade, inputs=cascade.inputs[:0])
