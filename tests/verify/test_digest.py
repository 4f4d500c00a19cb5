"""The sha256 digests a report records: they tell tensors apart by name, dtype, shape and every
bit, not by the order a module registers them; the calibration draw's digest does not depend on
its batching; a prune records the digests of exactly what it was given and what it returns."""
import copy

import torch
from torch import nn

from verify_helpers import QUIET, random_inputs, random_mlp
from nettrim import api
from nettrim.methods import NetTrim
from nettrim.report.digest import layer_digest, rows_digest, state_digest, tensors_digest


def test_a_digest_depends_on_names_dtypes_shapes_and_bits_not_on_order():
    a, b = torch.arange(6, dtype=torch.float32), torch.ones(2, 3)
    base = tensors_digest({"a": a, "b": b})
    assert tensors_digest({"b": b, "a": a}) == base
    assert tensors_digest({"a": a, "c": b}) != base  # a name
    assert tensors_digest({"a": a.view(torch.int32), "b": b}) != base  # the same bytes as another dtype
    assert tensors_digest({"a": a.reshape(2, 3), "b": b}) != base  # the same bytes in another shape
    flipped = a.clone()
    flipped.view(torch.int32)[3] ^= 1  # one bit of one value
    assert tensors_digest({"a": flipped, "b": b}) != base
    assert len(tensors_digest({"x": torch.ones(3, dtype=torch.bfloat16), "y": torch.tensor(True)})) == 64


def test_the_draw_digest_is_the_rows_whatever_the_batching():
    x = random_inputs(50, 4)
    whole = rows_digest([x])
    assert rows_digest(x.split(7)) == whole == rows_digest(x.split(50))
    assert rows_digest([x.flip(0)]) != whole
    assert rows_digest([x[:49]]) != whole
    assert rows_digest([x.double()]) != whole


def test_a_prune_records_the_digests_of_what_it_was_given_and_returns():
    model, x = random_mlp(), random_inputs()
    before = state_digest(model)
    result = api.prune(model, x, NetTrim(epsilon=0.3), mode="parallel", run=QUIET)
    digests = result.report.digests
    assert digests["algorithm"] == "sha256"
    assert digests["original"] == before == state_digest(model)  # the original is not touched
    assert digests["pruned"] == state_digest(result.model) != before
    assert digests["layers"] == {n: layer_digest(result.model, n) for n in ("0", "2", "4")}
    assert digests["inputs"] == rows_digest([x])
    changed = copy.deepcopy(result.model)
    with torch.no_grad():
        changed[2].bias[0] += 1e-6
    assert layer_digest(changed, "2") != digests["layers"]["2"]
    assert layer_digest(changed, "0") == digests["layers"]["0"]


def test_a_module_with_the_same_tensors_has_the_same_digest():
    model = random_mlp()
    again = nn.Sequential(*[copy.deepcopy(m) for m in model])
    assert state_digest(again) == state_digest(model)
