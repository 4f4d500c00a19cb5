"""Bounded-memory programs (``RunOptions(max_memory=...)``): the rows kept, the same answer
when nothing is dropped, certificates that hold on the rows kept, and one-line errors for bad
budgets."""
import json

import pytest
import torch

import nettrim
from nettrim import NetTrim, RunOptions
from nettrim.cli.main import main
from nettrim.data import load_dataset, subset
from nettrim.models import build_model, load_checkpoint, train
from nettrim.stream import MIN_ROWS, Batches, RowPlan, bytes_per_row, layer_stats
from recompute import all_hold


@pytest.fixture(scope="module")
def mlp(mlp_checkpoint):
    """The trained mlp-60-60 (784-60-60-10) and 2,000 MNIST training images."""
    model, _ = load_checkpoint(mlp_checkpoint)
    x, y = load_dataset("mnist", "train")
    return model, subset(x, y, 2000, seed=1)[0]


def first_layer_bytes(rows: int) -> int:
    """A budget of ``rows`` rows of mlp-60-60's first layer (784 inputs and the ones column,
    60 outputs)."""
    return rows * bytes_per_row(785, 60)


def quiet(**run):
    return RunOptions(progress=False, **run)


# Net-Trim's OBS-started program: it holds a ReLU layer's rows like the l1 route, in a third
# of its time on these layers (the l1 route is tested on networks in test_prune_network.py)
OBS = NetTrim(support="obs")


@pytest.mark.parametrize("text, size", [("2GiB", 2 * 2 ** 30), ("512MB", 512 * 10 ** 6), ("1.5KiB", 1536),
                                        ("1000000", 10 ** 6), (" 3 mib ", 3 * 2 ** 20), (4096, 4096)])
def test_sizes_parse(text, size):
    assert RunOptions(max_memory=text).max_memory == size


@pytest.mark.parametrize("bad", ["2GB!", "-1", "0", "", "GiB", "1e9", "2 GiBs", 0, -3, True, 1.5])
def test_bad_sizes_are_one_line(bad):
    """(None is no bound: accepted.)"""
    with pytest.raises(nettrim.NettrimError) as err:
        RunOptions(max_memory=bad)
    assert "RunOptions.max_memory must be a size" in str(err.value) and "\n" not in str(err.value)


def sample(total: int, keep: int, seed: int) -> torch.Tensor:
    """The documented sample: the first ``keep`` of a permutation of the rows seeded by ``seed``, sorted."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:keep].sort().values


def test_kept_rows_are_a_seeded_uniform_sample_the_same_whatever_the_batching(mlp):
    """A held program under a budget keeps exactly the rows of the documented seeded sample, in
    order, for any batch size (Y to rounding: a matrix product's last bits depend on the
    batch's size), spread over all rows; another seed keeps others. A Gram-only program
    streams every row whatever the budget."""
    model, x = mlp
    name = "1"  # mlp-60-60's first Linear
    full = layer_stats(model, name, Batches(x, 1024, model), relu=True, hold=True, plan=RowPlan())
    plan = RowPlan(max_memory=first_layer_bytes(1234))
    a = layer_stats(model, name, Batches(x, 1024, model), relu=True, hold=True, plan=plan)
    b = layer_stats(model, name, Batches(x, 37, model), relu=True, hold=True, plan=plan)
    idx = sample(2000, 1234, seed=0)
    assert 800 < float(idx.float().mean()) < 1200  # spread over all rows, not the first ones
    assert a.A.shape == (1234, 785) and (a.rows, a.rows_total) == (1234, 2000)
    assert torch.equal(a.A, b.A) and torch.allclose(a.Y, b.Y, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.A, full.A[idx]) and torch.equal(a.Y, full.Y[idx])
    other = layer_stats(model, name, Batches(x, 1024, model), relu=True, hold=True,
                        plan=RowPlan(max_memory=plan.max_memory, seed=4))
    assert torch.equal(other.A, full.A[sample(2000, 1234, seed=4)]) and not torch.equal(other.A, a.A)
    gram_only = layer_stats(model, name, Batches(x, 37, model), relu=False, hold=False, plan=plan)
    assert gram_only.A is None and gram_only.rows == gram_only.rows_total == 2000


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_a_budget_that_holds_every_row_changes_nothing(mlp, mode):
    model, x = mlp
    a = nettrim.prune(model, x, OBS, mode=mode, run=quiet())
    b = nettrim.prune(model, x, OBS, mode=mode, run=quiet(max_memory="1GiB"))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r.certificate.epsilon for r in a.report.layers] == [r.certificate.epsilon for r in b.report.layers]
    for r in b.report.layers:
        assert r.rows == r.rows_total == 2000 < 2 ** 30 // bytes_per_row(r.shape[1] + 1, r.shape[0])
    assert b.report.bound == a.report.bound and b.report.notes == a.report.notes
    assert b.report.peak_memory_mb > 0


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_a_tight_budget_keeps_a_sample_and_certifies_on_it(mlp, mode):
    """1,200 rows of the first layer fit: it is solved on them and its certificate holds there
    (measured again from the two models on the same seeded sample); the later, narrower layers
    keep all 2,000. The network bound is withheld."""
    model, x = mlp
    res = nettrim.prune(model, x, OBS, mode=mode, run=quiet(max_memory=first_layer_bytes(1200)))
    first, *rest = res.report.layers
    assert (first.rows, first.rows_total) == (1200, 2000) and first.sampled
    assert all(r.rows == r.rows_total == 2000 for r in rest)
    assert all(r.certified for r in res.report.layers)
    # the layers' claims hold on different rows: no network bound is claimed from them
    assert res.report.bound is None
    assert any("layer(s) 1 certified on a sample" in n for n in res.report.notes)
    assert all_hold(model, res.model, x, res.report)
    assert res.report.run["options"]["max_memory"] == first_layer_bytes(1200)


def test_a_conv_layer_keeps_at_most_its_budget():
    """LeNet-5's first conv (25 inputs and the ones column, 6 channels, padded: 784 positions an
    image; 254 bytes a row): 1 MB holds 3,937 patch rows of its 392,000, below the 5,000 it
    takes unbounded."""
    torch.manual_seed(0)
    x, y = load_dataset("mnist", "train")
    xs, ys = subset(x, y, 500, seed=0)
    model = build_model("lenet5")
    train(model, xs, ys, epochs=1, seed=0, progress=False)
    free = nettrim.prune(model, xs, run=quiet(layers=["0"]))  # the first conv alone
    res = nettrim.prune(model, xs, run=quiet(max_memory=10 ** 6, layers=["0"]))
    conv = res.report.layers[0]
    assert conv.kind == "conv2d" and conv.rows == 10 ** 6 // bytes_per_row(26, 6) == 3937
    assert conv.rows < free.report.layers[0].rows == 5000
    assert conv.rows_total == free.report.layers[0].rows_total == 500 * 28 * 28 and conv.certified
    assert res.report.skipped == ["3", "7", "9", "11"] and res.report.bound is None


def test_a_budget_below_a_layers_minimum_is_one_line_before_any_work(mlp):
    model, x = mlp
    with pytest.raises(nettrim.NettrimError) as err:
        nettrim.prune(model, x, run=quiet(max_memory=first_layer_bytes(MIN_ROWS - 1)))
    msg = str(err.value)
    assert "holds 999 rows of layer '1'" in msg and "raise max_memory to at least" in msg and "\n" not in msg


@pytest.mark.parametrize("size, match", [("2GB!", "max_memory must be a size"), ("-1", "max_memory must be a size"),
                                         ("0", "max_memory must be a size"), ("1MiB", "fewer than the 1000 it needs")])
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
    rc = main(["--no-progress", "prune", str(mlp_checkpoint), "--samples", "1500", "--max-memory", "6MiB",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    kept = 6 * 2 ** 20 // bytes_per_row(785, 60)  # 1,355 of the first layer's 1,500 rows
    assert f"on {kept:,} of its 1,500 rows" in printed and "peak memory" in printed
    assert "no network bound: layer(s) 1 certified on a sample" in printed
    report = json.loads(next(out.glob("*.json")).read_text())
    first = report["report"]["layers"][0]
    assert first["rows"] == kept and first["rows_total"] == 1500
    assert report["report"]["run"]["options"]["max_memory"] == 6 * 2 ** 20
    assert report["report"]["peak_memory_mb"] > 0
