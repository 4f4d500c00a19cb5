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
               "--out", str(tmp_path)])
    assert rc == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["mlp-nettrim-cascade.json", "mlp-nettrim-cascade.png", "mlp-nettrim-cascade.pt",
                     "mlp-nettrim-cascade.safetensors"]
    report = json.loads((tmp_path / "mlp-nettrim-cascade.json").read_text())
    assert report["report"]["sparsity"] > 0.5
    assert report["report"]["method"]["epsilon"] == 0.05
    sizes = report["sizes"]  # measured: the sparse file against the dense state dict
    assert sizes["sparse_bytes"] == (tmp_path / "mlp-nettrim-cascade.safetensors").stat().st_size
    assert sizes["sparse_bytes"] < sizes["dense_bytes"] / 2
    assert report["calibration"]["samples"] == 500 and len(report["calibration"]["sha256"]) == 64
    # certified layers, and the bound printed only because every layer is
    assert all(layer["certified"] for layer in report["report"]["layers"])
    assert report["report"]["bound"] >= report["report"]["output_error"]
    assert report["test_accuracy_after"] > report["test_accuracy_before"] - 3
    # the pruned checkpoint loads with plain torch, no nettrim needed
    raw = torch.load(tmp_path / "mlp-nettrim-cascade.pt", weights_only=True)
    assert raw["arch"] == "mlp-60-60" and int((raw["state_dict"]["1.weight"] == 0).sum()) > 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "certified" in out


def test_verify_recomputes_the_certificate_and_catches_a_changed_model(checkpoint, tmp_path, capsys):
    assert main(["--no-progress", "prune", str(checkpoint), "--samples", "300", "--epsilon", "0.1",
                 "--out", str(tmp_path)]) == 0
    pruned = tmp_path / "mlp-nettrim-cascade.pt"
    capsys.readouterr()
    assert main(["verify", str(pruned), "--data", "mnist"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("hold: all")
    # move one kept weight far: its layer's claim no longer holds, verify says so and exits 1
    raw = torch.load(pruned, weights_only=True)
    w = raw["state_dict"]["1.weight"]
    w[w != 0] *= 3.0
    torch.save(raw, tmp_path / "tampered.pt")
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "tampered.pt")]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL: layer '1'")


@pytest.mark.parametrize("argv, match", [
    (["verify", "PRUNED", "--data", "fashion-mnist"], "pass --data mnist"),
    (["verify", "PRUNED", "--original", "/no/such.pt"], "/no/such.pt is not there"),
    (["verify", "CKPT"], "carries no certificate"),
])
def test_verify_bad_input_is_one_line(argv, match, checkpoint, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("verify")
    assert main(["--no-progress", "prune", str(checkpoint), "--samples", "200", "--out", str(out)]) == 0
    pruned = out / "mlp-nettrim-cascade.pt"
    argv = [str(pruned) if a == "PRUNED" else str(checkpoint) if a == "CKPT" else a for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err


def test_max_drop_searches_the_budget_and_reports_the_test_once(checkpoint, tmp_path, capsys):
    rc = main(["--no-progress", "prune", str(checkpoint), "--samples", "300", "--max-drop", "1",
               "--validation-size", "1000", "--out", str(tmp_path)])
    assert rc == 0
    summary = json.loads((tmp_path / "mlp-nettrim-cascade.json").read_text())
    trials = summary["search"]["search"]
    assert len(trials) >= 2 and summary["search"]["status"] == "solved"
    chosen = min((t for t in trials if t["within_budget"]), key=lambda t: t["kept"])
    assert chosen["drop"] <= 1.0 and summary["report"]["sparsity"] == pytest.approx(1 - chosen["kept"])
    out = capsys.readouterr().out
    assert "trial 1:" in out and out.count("test accuracy:") == 1


def test_an_unreachable_budget_exits_3_and_writes_nothing(checkpoint, tmp_path, capsys):
    """A zero-point budget with a few calibration images: even the smallest tolerance loses
    some validation images."""
    out = tmp_path / "out"
    rc = main(["--no-progress", "prune", str(checkpoint), "--samples", "50", "--max-drop", "0",
               "--validation-size", "3000", "--reweight", "3", "--out", str(out)])
    assert rc == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: budget_unreachable") and "\n" not in err
    assert not out.exists()


def test_eval(checkpoint, capsys):
    assert main(["eval", str(checkpoint)]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["prune", "/no/such.pt", "--out", "OUT"], "checkpoint not found"),
    (["prune", "CKPT", "--epsilon", "-1", "--out", "OUT"], "epsilon"),
    (["prune", "CKPT", "--data", "fashion-mnist", "--data-dir", "/no/dir", "--out", "OUT"], "/no/dir"),
    (["compare", "--checkpoint", "CKPT", "--methods", "nettrim,magic", "--out", "OUT"], "unknown method"),
    (["experiment", "nonsense"], "unknown experiment"),
    (["prune", "CKPT", "--max-drop", "-1", "--out", "OUT"], "--max-drop must lie in"),
    (["prune", "CKPT", "--max-drop", "nan", "--out", "OUT"], "--max-drop must lie in"),
    (["prune", "CKPT", "--max-drop", "0.5", "--validation-size", "70000", "--out", "OUT"],
     "validation size must lie in"),
    (["prune", "CKPT", "--reweight", "-1", "--out", "OUT"], "reweight must be an integer"),
    (["prune", "CKPT", "--paper", "--reweight", "2", "--out", "OUT"], "--paper has no reweighting"),
    (["prune", "CKPT", "--gamma", "0.5", "--out", "OUT"], "gamma must be a finite number >= 1"),
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
               "--max-rows", "1500", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "lenet5-nettrim-cascade.json").read_text())["report"]
    layers = report["layers"]
    assert [la["kind"] for la in layers] == ["conv2d", "conv2d", "linear", "linear", "linear"]
    assert layers[0]["shape"] == [6, 1, 5, 5] and layers[1]["shape"] == [16, 6, 5, 5]
    assert [la["rows"] for la in layers[:2]] == [1500, 1500]
    assert all(la["nnz_after"] < la["nnz_before"] for la in layers)
    assert report["run"]["options"]["max_rows"] == 1500
    assert main(["eval", str(tmp_path / "lenet5-nettrim-cascade.pt"), "--data", "mnist"]) == 0
    assert "lenet5, test accuracy" in capsys.readouterr().out


def test_compare_quick_grid_writes_every_cell_and_the_plots(checkpoint, tmp_path, capsys):
    """`nettrim compare --quick`: every (method, sparsity) cell in the JSON with its achieved
    sparsity and timings; thresholding exact, Net-Trim at or below its count and saying how."""
    rc = main(["--no-progress", "compare", "--checkpoint", str(checkpoint), "--quick",
               "--methods", "threshold,lobs,nettrim", "--hidden-only", "--retrain-epochs", "0",
               "--out", str(tmp_path)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png")
    result = json.loads((tmp_path / "compare.json").read_text())
    cells = {(c["method"], c["target_sparsity"]): c for c in result["cells"]}
    assert result["options"]["nettrim"]["settings"]["max_iterations"] == 1000
    assert set(cells) == {(m, s) for m in ("threshold", "lobs", "nettrim") for s in (0.5, 0.9)}
    for (method, s), c in cells.items():
        assert c["prune_seconds"] >= 0 and c["total_seconds"] >= c["prune_seconds"]
        assert set(c["layer_kept"]) == {"1", "3"}  # the logits layer left dense
        assert c["achieved_sparsity"] == pytest.approx(s, abs=0.01)
        if method == "nettrim":  # cut to the count: how many solves it took is recorded
            assert all(info["solves"] >= 1 for info in c["layer_info"].values())
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
