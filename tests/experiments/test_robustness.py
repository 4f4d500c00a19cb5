"""Robustness: accuracy falls as Gaussian input noise grows, for every network (reduced quick)."""
import json
from dataclasses import replace

import pytest
import torch

from nettrim.experiments import robustness as rb

NET = dict(arch="lenet-300-100", dataset="mnist", epochs=2, train_samples=4000)
PRESET = replace(rb.QUICK, name="test", net=NET, epsilons=(0.1,), ratios=(0.0, 1.0, 2.0),
                 draws=2, samples=200, test_samples=1000, description="test")


@pytest.fixture(scope="module")
def quick(run_quick):
    return run_quick(rb, PRESET, "robustness")


def test_noise_has_the_requested_ratio():
    x = torch.randn(7, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    for r in (0.0, 0.5, 2.0):
        n = rb.noisy(x, r, g) - x
        ratio = n.reshape(7, -1).norm(dim=1) / x.reshape(7, -1).norm(dim=1)
        assert torch.allclose(ratio, torch.full((7,), r), atol=1e-5)


def test_accuracy_decreases_with_noise(quick):
    _, payload = quick
    run = payload["runs"][0]
    assert run["summary"]["all_decrease_with_noise"]
    for name, c in run["curves"].items():
        m = c["mean"]
        assert m[0] > m[-1], (name, m)
        assert m[1] >= m[-1] - 1.0, (name, m)
    assert set(run["curves"]) == {"original", "nettrim g=0.1", "threshold g=0.1"}


def test_same_counts_and_files(quick):
    out, payload = quick
    run = payload["runs"][0]
    nz = run["nonzero"]
    assert nz["nettrim g=0.1"] == nz["threshold g=0.1"] < nz["original"] / 2
    assert run["pruned"]["0.1"]["sparsity"] > 0.5
    assert payload["seeds"] == [run["seed"]] == [0]
    data = json.loads((out / rb.JSON_NAME).read_text())
    assert (out / rb.PNG_NAME).read_bytes()[:4] == b"\x89PNG"
    assert "| original |" in rb.markdown_section(data)
