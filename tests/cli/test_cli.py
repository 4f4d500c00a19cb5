"""The command line on real MNIST with a small trained model: outputs, reports, bad input."""
import json

import pytest
import torch

from nettrim.cli.main import main
from nettrim.data import load_dataset, subset
from nettrim.models import build_model, save_checkpoint, train


def trained_checkpoint(tmp_path_factory, arch, stem, images, epochs):
    """A model of ``arch`` trained on ``images`` MNIST images, saved as a checkpoint."""
    torch.set_num_threads(1)
    x, y = load_dataset("mnist", "train")
    xs, ys = subset(x, y, images, seed=0)
    torch.manual_seed(0)  # the same model whichever tests ran before
    model = build_model(arch)
    train(model, xs, ys, epochs=epochs, seed=0, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / f"{stem}.pt"
    save_checkpoint(path, model, arch, {}, {"dataset": "mnist"})
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory, "mlp-60-60", "mlp", 5000, 3)


def test_prune_writes_report_plot_and_checkpoints(checkpoint, tmp_path, capsys):
    rc = main(["--no-progress", "prune", str(checkpoint), "--samples", "500", "--epsilon", "0.05",
               "--reweight", "2", "--reweight-rel-tol", "1e-2", "--per-neuron", "1,3", "--hinge",
               "--relax-slack", "--out", str(tmp_path)])
    assert rc == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["mlp-nettrim-cascade.json", "mlp-nettrim-cascade.png", "mlp-nettrim-cascade.pt"]
    report = json.loads((tmp_path / "mlp-nettrim-cascade.json").read_text())
    assert report["report"]["sparsity"] > 0.5
    assert report["report"]["settings"]["per_neuron"] == ["1", "3"]  # hidden layers split
    # every layer's weights meet its constraints (a reweighted solve may stop at its cap)
    assert all(layer["status"] == "solved" or layer["info"]["constraints_hold"]
               for layer in report["report"]["layers"])
    assert report["test_accuracy_after"] > report["test_accuracy_before"] - 3
    # the pruned checkpoint loads with plain torch, no nettrim needed
    raw = torch.load(tmp_path / "mlp-nettrim-cascade.pt", weights_only=True)
    assert raw["arch"] == "mlp-60-60" and int((raw["state_dict"]["1.weight"] == 0).sum()) > 0
    assert "test accuracy" in capsys.readouterr().out


def test_eval(checkpoint, capsys):
    assert main(["eval", str(checkpoint)]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["prune", "/no/such.pt", "--out", "OUT"], "checkpoint not found"),
    (["prune", "CKPT", "--epsilon", "-1", "--out", "OUT"], "epsilon"),
    (["prune", "CKPT", "--dataset", "fashion-mnist", "--data-dir", "/no/dir", "--out", "OUT"], "/no/dir"),
    (["compare", "--checkpoint", "CKPT", "--methods", "nettrim,magic", "--out", "OUT"], "unknown method"),
    (["experiment", "nonsense"], "unknown experiment"),
    (["prune", "CKPT", "--layer-epsilon", "3:0.2", "--out", "OUT"], "NAME=EPS"),
    (["prune", "CKPT", "--layer-epsilon", "9=0.2", "--out", "OUT"], "prunable layers"),
    (["prune", "CKPT", "--reweight-rel-tol", "0", "--out", "OUT"], "--reweight-rel-tol"),
    (["prune", "CKPT", "--per-neuron", "1,9", "--out", "OUT"], "per_neuron names no prunable layer 9"),
    (["prune", "CKPT", "--margin", "2", "--out", "OUT"], "margin must lie in [0, 1]"),
    (["prune", "CKPT", "--margin", "0.5", "--relax-slack", "--out", "OUT"], "pass one or the other"),
    (["compare", "--checkpoint", "CKPT", "--methods", "threshold,lobs", "--epsilon", "0.1", "--out", "OUT"],
     "needs 'nettrim' among the methods"),
    (["compare", "--checkpoint", "CKPT", "--epsilon", "0.1,-1", "--out", "OUT"], "epsilon must be a positive"),
    (["compare", "--checkpoint", "CKPT", "--epsilon", "0.1,x", "--out", "OUT"], "--epsilon must be comma-separated"),
])
def test_bad_input_one_line_no_output(argv, match, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(checkpoint) if a == "CKPT" else str(out) if a == "OUT" else a for a in argv]
    assert main(["--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())


def test_refuses_to_overwrite_input(checkpoint, capsys):
    before = checkpoint.read_bytes()
    # the output stem differs from the input, so point --out at a copy named like the output
    target = checkpoint.parent / "mlp-nettrim-cascade.pt"
    target.write_bytes(before)
    rc = main(["--no-progress", "prune", str(target), "--samples", "200", "--out", str(checkpoint.parent)])
    assert rc == 0  # stem gets the suffix again: mlp-nettrim-cascade-nettrim-cascade.pt
    assert checkpoint.read_bytes() == before


@pytest.fixture(scope="module")
def lenet5_checkpoint(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory, "lenet5", "lenet5", 3000, 1)


def test_prune_a_conv_net_end_to_end(lenet5_checkpoint, tmp_path, capsys):
    """LeNet-5 through the CLI: conv and FC layers pruned, kernel shapes and row budget reported."""
    rc = main(["--no-progress", "prune", str(lenet5_checkpoint), "--samples", "200", "--epsilon", "0.1",
               "--max-rows", "1500", "--layer-epsilon", "3=0.1", "--hinge", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "lenet5-nettrim-cascade.json").read_text())["report"]
    layers = report["layers"]
    assert [la["kind"] for la in layers] == ["conv2d", "conv2d", "linear", "linear", "linear"]
    assert layers[0]["shape"] == [6, 1, 5, 5] and layers[1]["shape"] == [16, 6, 5, 5]
    assert [la["samples"] for la in layers[:2]] == [1500, 1500]
    assert all(la["nnz_after"] < la["nnz_before"] for la in layers)
    assert report["settings"]["capture"] == {"max_rows": 1500}
    assert report["settings"]["hinge"] is True
    assert [la["info"]["hinge"] for la in layers] == [True, True, True, True, False]
    assert main(["eval", str(tmp_path / "lenet5-nettrim-cascade.pt"), "--dataset", "mnist"]) == 0
    assert "lenet5, test accuracy" in capsys.readouterr().out


def test_compare_quick_grid_writes_every_cell_and_the_plots(checkpoint, tmp_path, capsys):
    """`nettrim compare --quick`: every (method, sparsity) cell in the JSON with its achieved
    sparsity and timings; thresholding exact, Net-Trim at or below its count and saying how."""
    rc = main(["--no-progress", "compare", "--checkpoint", str(checkpoint), "--quick",
               "--methods", "threshold,lobs,nettrim", "--hidden-only", "--retrain-epochs", "0",
               "--per-neuron", "--out", str(tmp_path)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png")
    result = json.loads((tmp_path / "compare.json").read_text())
    cells = {(c["method"], c["target_sparsity"]): c for c in result["cells"]}
    assert result["options"]["nettrim"]["per_neuron"] is True  # the quick preset's, plus the flag
    assert result["options"]["nettrim"]["settings"]["max_iterations"] == 1000
    assert set(cells) == {(m, s) for m in ("threshold", "lobs", "nettrim") for s in (0.5, 0.9)}
    for (method, s), c in cells.items():
        assert c["prune_seconds"] >= 0 and c["total_seconds"] >= c["prune_seconds"]
        assert set(c["layer_kept"]) == {"1", "3"}  # the logits layer left dense
        if method == "nettrim":
            assert c["achieved_sparsity"] >= s - 0.01
            assert all("thresholded" in info for info in c["layer_info"].values())
        else:
            assert c["achieved_sparsity"] == pytest.approx(s, abs=0.01)
    assert cells[("lobs", 0.9)]["accuracy"] > cells[("threshold", 0.9)]["accuracy"]
    assert "nettrim" in capsys.readouterr().out


def test_compare_matched_to_nettrim_counts(checkpoint, tmp_path, capsys):
    """`nettrim compare --epsilon`: Net-Trim at each eps, the rivals at its per-layer counts
    (thresholding exactly; cleanup of dead units may only remove more)."""
    rc = main(["--no-progress", "compare", "--checkpoint", str(checkpoint), "--quick",
               "--methods", "threshold,lobs,nettrim", "--hidden-only", "--retrain-epochs", "0",
               "--epsilon", "0.05,0.2", "--out", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["matched_to"] == "nettrim" and result["epsilons"] == [0.05, 0.2]
    cells = {(c["method"], c["epsilon"]): c for c in result["cells"]}
    assert set(cells) == {(m, e) for m in ("threshold", "lobs", "nettrim") for e in (0.05, 0.2)}
    for eps in (0.05, 0.2):
        ref = cells[("nettrim", eps)]["layer_nonzeros"]
        assert cells[("threshold", eps)]["layer_nonzeros"]["1"] == ref["1"]
        for rival in ("threshold", "lobs"):
            cell = cells[(rival, eps)]
            assert cell["matched_to"] == "nettrim" and cell["target_sparsity"] is None
            # removing a unit left with no outgoing weights (or none incoming) takes its other
            # side's weights too, so a rival may end a little below the count, never above
            assert all(0.95 * ref[k] <= v <= ref[k] for k, v in cell["layer_nonzeros"].items())
    # a larger eps buys a sparser network
    assert cells[("nettrim", 0.2)]["achieved_sparsity"] > cells[("nettrim", 0.05)]["achieved_sparsity"]
    assert "nettrim's counts (eps 0.2)" in capsys.readouterr().out


def test_compare_takes_a_sparsity_or_an_epsilon_not_both(checkpoint):
    with pytest.raises(SystemExit):
        main(["compare", "--checkpoint", str(checkpoint), "--sparsity", "0.5", "--epsilon", "0.1"])
