"""Bounded-memory capture (``max_memory``): the rows kept, the same answer when nothing is
dropped, certificates that hold on the rows kept, and one-line errors for bad budgets."""
import json

import pytest
import torch

import nettrim
from nettrim.capture import capture_layer, capture_rows
from nettrim.capture.memory import MIN_ROWS, bytes_per_row, parse_memory, sample_rows
from nettrim.cli.main import main
from nettrim.data import load_dataset, subset
from nettrim.models import build_model, load_checkpoint, train
from nettrim.pruners.verify import verify


@pytest.fixture(scope="module")
def mlp(mlp_checkpoint):
    """The trained mlp-60-60 (784-60-60-10) and 2,000 MNIST training images."""
    model, _ = load_checkpoint(mlp_checkpoint)
    x, y = load_dataset("mnist", "train")
    return model, subset(x, y, 2000, seed=1)[0]


def first_layer_bytes(rows: int) -> int:
    """A budget of ``rows`` rows of mlp-60-60's first layer (784 inputs, 60 outputs)."""
    return rows * bytes_per_row(784, 60)


@pytest.mark.parametrize("text, size", [("2GiB", 2 * 2 ** 30), ("512MB", 512 * 10 ** 6), ("1.5KiB", 1536),
                                        ("1000000", 10 ** 6), (" 3 mib ", 3 * 2 ** 20), (4096, 4096)])
def test_sizes_parse(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["2GB!", "-1", "0", "", "GiB", "1e9", "2 GiBs", 0, -3, True, 1.5, None])
def test_bad_sizes_are_one_line(bad):
    with pytest.raises(nettrim.NettrimError) as err:
        parse_memory(bad)
    assert "max_memory" in str(err.value) and "\n" not in str(err.value)


def test_sample_is_seeded_uniform_and_sorted():
    idx = sample_rows(10_000, 1_000, seed=3)
    assert idx.shape == (1000,) and bool((idx[1:] > idx[:-1]).all())
    assert torch.equal(idx, sample_rows(10_000, 1_000, seed=3))
    assert not torch.equal(idx, sample_rows(10_000, 1_000, seed=4))
    assert 4000 < float(idx.float().mean()) < 6000  # spread over all rows, not the first ones
    assert sample_rows(500, 1_000, seed=3) is None


def test_kept_rows_are_the_same_whatever_the_batching(mlp):
    """Streaming batch by batch keeps exactly the rows ``sample_rows`` names, in order, for any
    batch size (Z to rounding: a matrix product's last bits depend on the batch's size)."""
    model, x = mlp
    name = "1"  # mlp-60-60's first Linear
    full_x, full_z = capture_layer(model, name, x)
    budget = first_layer_bytes(1234)
    a = capture_rows(model, name, x, batch_size=1024, max_memory=budget)
    b = capture_rows(model, name, x, batch_size=37, max_memory=budget)
    idx = sample_rows(2000, 1234, seed=0)
    assert a.X.shape == (1234, 784) and a.rows_total == 2000 and a.rows_limit == 1234
    assert torch.equal(a.X, b.X) and torch.allclose(a.Z, b.Z, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.X, full_x[idx]) and torch.equal(a.Z, full_z[idx])
    only_z = capture_rows(model, name, x, batch_size=37, max_memory=budget, keep_inputs=False)
    assert only_z.X is None and torch.equal(only_z.Z, b.Z)


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_a_budget_that_holds_every_row_changes_nothing(mlp, mode):
    model, x = mlp
    a = nettrim.prune(model, x, mode=mode, progress=False)
    b = nettrim.prune(model, x, mode=mode, progress=False, max_memory="1GiB")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r.epsilon for r in a.report.layers] == [r.epsilon for r in b.report.layers]
    for r in b.report.layers:
        assert r.info["rows_kept"] == r.info["rows_total"] == 2000 < r.info["rows_limit"]
    assert b.report.bound == a.report.bound and "bound_withheld" not in b.report.settings
    assert b.report.peak_memory_mb > 0


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_a_tight_budget_keeps_a_sample_and_certifies_on_it(mlp, mode):
    """1,200 rows of the first layer fit: it is solved on them and its certificate holds there
    (measured again by ``verify``, which captures the same rows from the report's settings);
    the later, narrower layers keep all 2,000. The network bound is withheld."""
    model, x = mlp
    res = nettrim.prune(model, x, mode=mode, progress=False, max_memory=first_layer_bytes(1200))
    first, *rest = res.report.layers
    assert first.info["rows_kept"] == first.info["rows_limit"] == 1200 == first.samples
    assert first.info["rows_total"] == 2000
    assert all(r.info["rows_kept"] == 2000 for r in rest)
    assert all(r.certified for r in res.report.layers)
    # the layers' claims hold on different rows: no network bound is claimed from them
    assert res.report.bound is None
    assert "layer(s) 1 certified on a sample" in res.report.settings["bound_withheld"]
    checks = verify(model, res.model, x, res.report.to_dict())
    assert checks and all(c.holds for c in checks)
    assert res.report.settings["capture"]["max_memory"] == first_layer_bytes(1200)


def test_a_conv_layer_keeps_at_most_its_budget():
    """LeNet-5's first conv (25 inputs, 6 channels, padded: 784 positions an image; 610 bytes
    a row): 1 MB holds 1,639 patch rows of its 392,000, below the 5,000 it takes unbounded."""
    torch.manual_seed(0)
    x, y = load_dataset("mnist", "train")
    xs, ys = subset(x, y, 500, seed=0)
    model = build_model("lenet5")
    train(model, xs, ys, epochs=1, seed=0, progress=False)
    free = nettrim.prune(model, xs, progress=False, layers=["0"])  # the first conv alone
    res = nettrim.prune(model, xs, progress=False, max_memory=10 ** 6, layers=["0"])
    conv = res.report.layers[0]
    assert conv.kind == "conv2d" and conv.info["rows_limit"] == 10 ** 6 // bytes_per_row(25, 6)
    assert conv.info["rows_kept"] == conv.samples == conv.info["rows_limit"] < free.report.layers[0].samples
    assert conv.info["rows_total"] == 500 * 28 * 28 and conv.certified


def test_a_budget_below_a_layers_minimum_is_one_line_before_any_work(mlp):
    model, x = mlp
    with pytest.raises(nettrim.NettrimError) as err:
        nettrim.prune(model, x, progress=False, max_memory=first_layer_bytes(MIN_ROWS - 1))
    msg = str(err.value)
    assert "holds 999 rows" in msg and "raise max_memory to at least" in msg and "\n" not in msg


@pytest.mark.parametrize("size, match", [("2GB!", "max_memory must be a size"), ("-1", "max_memory must be a size"),
                                         ("0", "at least 1 byte"), ("1MiB", "fewer than the 1000 it needs")])
def test_cli_bad_max_memory_one_line_nothing_written(size, match, mlp_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--no-progress", "prune", str(mlp_checkpoint), "--samples", "1500", "--max-memory", size,
               "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not out.exists()


def test_cli_reports_the_rows_kept(mlp_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--no-progress", "prune", str(mlp_checkpoint), "--samples", "1500", "--max-memory", "16MiB",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    kept = 16 * 2 ** 20 // bytes_per_row(784, 60)
    assert f"on {kept:,} of its 1,500 rows" in printed and "peak memory" in printed
    assert "no network bound: max_memory: layer(s) 1 certified on a sample" in printed
    report = json.loads(next(out.glob("*.json")).read_text())
    first = report["report"]["layers"][0]
    assert first["info"]["rows_kept"] == kept and first["info"]["rows_total"] == 1500
    assert report["report"]["settings"]["capture"]["max_memory"] == 16 * 2 ** 20
    assert report["report"]["peak_memory_mb"] > 0
