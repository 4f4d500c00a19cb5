"""Depth: thresholding the first layer hurts more than the last hidden layer (reduced quick)."""
import json
from dataclasses import replace

import pytest

from nettrim.experiments import depth

# the quick preset's network: trained less, the depth effect is within the noise
PRESET = replace(depth.QUICK, name="test", sparsities=(0.0, 0.8, 0.9, 0.95), epsilons=(0.2,),
                 samples=128, test_samples=2000, description="test")


@pytest.fixture(scope="module")
def quick(run_quick, fashion_mnist):
    return run_quick(depth, PRESET, "depth")


def test_thresholded_copy_keeps_counts():
    from nettrim.models import build_model

    model = build_model("mlp-60-60")
    pruned = depth.thresholded(model, {"1": 100})
    assert depth.layer_nnz(pruned, "1") == 100
    assert depth.layer_nnz(model, "1") == depth.layer_size(model, "1")  # original untouched


def test_first_layer_hurts_more_than_last_hidden(quick):
    _, payload = quick
    run = payload["runs"][0]
    s = run["summary"]
    assert len(payload["layers"]) >= 5
    assert s["first_hurts_more_than_last_hidden"], s["mean_drop_alone_at_80_plus"]
    # thresholding nothing changes nothing; thresholding everything from layer 1 on is worst
    for name in payload["layers"]:
        assert run["threshold"]["alone"][name][0] == 0
    onward = run["threshold"]["onward"]
    first = payload["layers"][0]
    assert all(onward[first][-1] <= onward[n][-1] + 1.0 for n in payload["layers"])


def test_nettrim_per_layer_rows(quick):
    out, payload = quick
    rows = payload["runs"][0]["nettrim"]
    assert len(rows) == len(payload["layers"])
    for r in rows:
        assert r["status"] == "solved"
        assert 0 < r["sparsity"] < 1
        # Proposition 1 on the pruning samples: the layer error is within the budget
        assert r["rel_layer_error"]["nettrim_train"] <= 0.2 * 1.01
    data = json.loads((out / depth.JSON_NAME).read_text())
    assert (out / depth.PNG_NAME).read_bytes()[:4] == b"\x89PNG"
    assert "first hidden layer hurts more" in depth.markdown_section(data)


def test_depth_on_a_conv_net(run_quick, fashion_mnist):
    """LeNet-5: every layer, conv ones included, gets its Net-Trim row within the budget (the
    response error on the pruning patches <= g) and a thresholding sweep."""
    from nettrim.experiments import depth_conv

    preset = replace(depth_conv.QUICK, name="test", sparsities=(0.0, 0.9), epsilons=(0.2,),
                     net=dict(depth_conv.NET, epochs=1, train_samples=3000),
                     samples=64, test_samples=1000, description="test")
    out, payload = run_quick(depth_conv, preset, "depth-conv")
    run = payload["runs"][0]
    assert payload["experiment"] == "depth-conv" and len(payload["layers"]) == 5
    assert [len(s) for s in run["shapes"].values()][:2] == [4, 4]  # two conv layers
    for r in run["nettrim"]:
        assert r["status"] == "solved" and 0 < r["sparsity"] < 1
        assert r["rel_layer_error"]["nettrim_train"] <= 0.2 * 1.01
    assert (out / depth_conv.PNG_NAME).read_bytes()[:4] == b"\x89PNG"
    assert "## Depth on a convolutional network" in depth_conv.markdown_section(payload)
