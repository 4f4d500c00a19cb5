"""The command line on a user's own files: a model built by a factory named on the command
line, its weights from a state dict, data from an .npz, a directory of .npy files or an image
folder. Tiny models and data written to tmp_path; real training, real pruning."""
import json
import pickle
import textwrap

import numpy as np
import pytest
import torch

import nettrim
from nettrim.cli.main import main
from nettrim.data.user import data_sha256, read_user_data
from nettrim.models import evaluate, train
from nettrim.models.user import file_sha256

FACTORIES = '''
import torch
from torch import nn


class Net(nn.Module):
    """8x8 grey images, 4 classes."""

    def __init__(self, hidden=32):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def build():
    return Net()


def wide():
    return Net(hidden=48)


def broken():
    raise RuntimeError("no weights for you")


def not_a_module():
    return [1, 2]
'''

CLASSES = ("circle", "cross", "ring", "stripe")  # folder names, sorted: labels 0..3


def patterns(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four noisy 8x8 templates, quantized to k/255 as an 8-bit image is: x (n, 1, 8, 8) float32
    in [0, 1], y (n,) int64."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(99).random((4, 8, 8))
    y = np.repeat(np.arange(4), n_per_class)
    x = np.clip(templates[y] + 0.35 * rng.standard_normal((len(y), 8, 8)), 0, 1)
    x = np.round(255 * x).astype(np.uint8)
    return (x[:, None] / np.float32(255)).astype(np.float32), y.astype(np.int64)


def write_npz(path, x, y):
    np.savez(path, x=x, y=y)
    return path


def write_npy_dir(path, x, y):
    path.mkdir()
    np.save(path / "x.npy", x)
    np.save(path / "y.npy", y)
    return path


def write_image_folder(path, x, y, classes=CLASSES):
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y)):
        d = path / classes[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(d / f"{i:04d}.png")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A factory module, a trained Net's weights (.pt and .safetensors), and the same training
    data in the three layouts, plus a test file."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("user")
    (d / "nettrim_test_nets.py").write_text(textwrap.dedent(FACTORIES))
    x, y = patterns(100, seed=0)
    write_npz(d / "train.npz", x, y)
    write_npy_dir(d / "train_npy", x, y)
    write_image_folder(d / "train_images", x, y)
    write_npz(d / "test.npz", *patterns(50, seed=1))
    import importlib.util

    spec = importlib.util.spec_from_file_location("_nets_for_training", d / "nettrim_test_nets.py")
    nets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nets)
    torch.manual_seed(0)
    model = nets.build()
    train(model, torch.from_numpy(x), torch.from_numpy(y), epochs=30, batch_size=32, lr=3e-3, seed=0,
          progress=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, d / "net.pt")
    save_file(state, str(d / "net.safetensors"))
    return d


@pytest.fixture
def nets(files, monkeypatch):
    """The factory module importable by name, as from the user's current directory."""
    monkeypatch.syspath_prepend(str(files))
    import nettrim_test_nets

    return nettrim_test_nets


def prune_argv(files, out, *extra, data="train.npz", weights="net.pt"):
    return ["--no-progress", "prune", "--model", "nettrim_test_nets:build", "--weights", str(files / weights),
            "--data", str(files / data), "--samples", "200", "--out", str(out), *extra]


def test_the_three_layouts_read_the_same_samples(files):
    """An .npz, a directory of .npy files and an image folder of the same images give the
    same tensors (the image folder's labels from its sorted folder names)."""
    a, b, c = (read_user_data(files / n) for n in ("train.npz", "train_npy", "train_images"))
    assert (a.layout, b.layout, c.layout) == ("npz", "npy", "images")
    assert c.classes == CLASSES and c.x.shape == (400, 1, 8, 8) and c.x.dtype == torch.float32
    for other in (b, c):
        assert torch.equal(a.x, other.x) and torch.equal(a.y, other.y)
    assert a.sha256 == file_sha256(files / "train.npz")
    assert len({a.sha256, b.sha256, c.sha256}) == 3  # each names its own files
    assert c.sha256 == data_sha256(files / "train_images", "images")


@pytest.mark.parametrize("data", ["train.npz", "train_npy", "train_images"])
def test_prune_a_user_model_on_each_layout(data, files, nets, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(prune_argv(files, out, "--epsilon", "0.1", data=data)) == 0
    stem = "net-nettrim-cascade"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.{s}" for s in ("json", "png", "pt", "safetensors")]
    report = json.loads((out / f"{stem}.json").read_text())
    # what verify needs: the factory, the weights' hash, the data's hash and the draw
    assert report["source"] == {"factory": "nettrim_test_nets:build",
                                "weights": {"path": str(files / "net.pt"), "sha256": file_sha256(files / "net.pt")}}
    cal = report["calibration"]
    assert cal["dataset"] == str(files / data) and cal["data"]["sha256"] == read_user_data(files / data).sha256
    assert cal["validation_size"] == 40 and cal["samples"] == 200  # a tenth of 400 held out
    assert report["accuracy_on"] == "validation" and "test_accuracy_after" not in report
    assert report["validation_accuracy_after"] > report["validation_accuracy_before"] - 10
    assert report["report"]["sparsity"] > 0.3
    # the pruned state dict fits the factory's model, loaded with plain torch
    model = nets.build()
    model.load_state_dict(torch.load(out / f"{stem}.pt", weights_only=True))
    assert int((model.fc1.weight == 0).sum()) > 0
    # the sparse file holds the same weights, by the model's own names
    again = nettrim.load(out / f"{stem}.safetensors", into=nets.build())
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    text = capsys.readouterr().out
    assert "validation accuracy:" in text and "nettrim eval" in text and "--data TEST_PATH" in text


def test_the_same_samples_in_two_layouts_give_the_same_draw(files, nets, tmp_path):
    """The calibration draw depends on the samples, not on the layout they came in."""
    draws = []
    for data in ("train.npz", "train_images"):
        assert main(prune_argv(files, tmp_path / data, "--epsilon", "0.1", data=data)) == 0
        draws.append(json.loads((tmp_path / data / "net-nettrim-cascade.json").read_text())["calibration"]["sha256"])
    assert draws[0] == draws[1]


def test_a_rival_at_a_sparsity_from_safetensors_weights(files, nets, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(prune_argv(files, out, "--method", "sparsegpt", "--sparsity", "0.6",
                           weights="net.safetensors")) == 0
    report = json.loads((out / "net-sparsegpt-cascade.json").read_text())
    assert report["report"]["method"]["name"] == "sparsegpt"
    assert report["source"]["weights"]["sha256"] == file_sha256(files / "net.safetensors")
    model = nets.build()
    model.load_state_dict(torch.load(out / "net-sparsegpt-cascade.pt", weights_only=True))
    for name in ("fc1", "fc2"):  # 60 % zeros in every layer, weights and biases counted together
        layer = getattr(model, name)
        total = layer.weight.numel() + layer.bias.numel()
        kept = int(torch.count_nonzero(layer.weight)) + int(torch.count_nonzero(layer.bias))
        assert kept == round(0.4 * total), name


def test_a_budget_with_a_rival_searches_its_sparsity(files, nets, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(prune_argv(files, out, "--method", "wanda", "--max-drop", "5")) == 0
    search = json.loads((out / "net-wanda-cascade.json").read_text())["search"]
    assert search["knob"] == "sparsity" and search["status"] == "solved"
    chosen = min((t for t in search["search"] if t["within_budget"]), key=lambda t: t["kept"])
    assert chosen["drop"] <= 5 and "trial 1: sparsity" in capsys.readouterr().out


def test_eval_on_a_user_test_file(files, nets, tmp_path, capsys):
    """eval of the pruned weights on a separate test file: every sample, the accuracy computed
    here from the same weights."""
    out = tmp_path / "out"
    assert main(prune_argv(files, out, "--epsilon", "0.1")) == 0
    capsys.readouterr()
    pruned = out / "net-nettrim-cascade.pt"
    assert main(["eval", "--model", "nettrim_test_nets:build", "--weights", str(pruned),
                 "--data", str(files / "test.npz")]) == 0
    text = capsys.readouterr().out
    model = nets.build()
    model.load_state_dict(torch.load(pruned, weights_only=True))
    test = read_user_data(files / "test.npz")
    assert f"accuracy on the 200 samples of {files / 'test.npz'} {evaluate(model, test.x, test.y):.2f} %" in text
    # the sparse file is weights too
    assert main(["eval", "--model", "nettrim_test_nets:build", "--weights", str(out / "net-nettrim-cascade.safetensors"),
                 "--data", str(files / "test.npz")]) == 0
    assert f"{evaluate(model, test.x, test.y):.2f} %" in capsys.readouterr().out


def test_export_a_user_model(files, nets, tmp_path, capsys):
    target = tmp_path / "net.safetensors"
    assert main(["export", "--model", "nettrim_test_nets:build", "--weights", str(files / "net.pt"),
                 "--out", str(target)]) == 0
    back = nettrim.load(target, into=nets.build())
    for k, v in torch.load(files / "net.pt", weights_only=True).items():
        assert torch.equal(back.state_dict()[k], v), k
    assert main(["export", "--model", "nettrim_test_nets:build", "--weights", str(files / "net.pt"),
                 "--format", "onnx", "--data", str(files / "test.npz"), "--out", str(tmp_path / "net.onnx")]) == 0
    assert "onnxruntime max abs difference" in capsys.readouterr().out


def _pickled_npz(d):
    np.savez(d / "objects.npz", x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.array([0, 1]))
    return d / "objects.npz"


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


BAD = {
    "missing data file": (lambda d: {"data": d / "nope.npz"}, "no such file or directory"),
    "missing weights": (lambda d: {"weights": d / "nope.pt"}, "weights not found"),
    "factory does not import": (lambda d: {"model": "no_such_module_here:build"}, "cannot import no_such_module_here"),
    "factory is not there": (lambda d: {"model": "nettrim_test_nets:nothing"}, "has no 'nothing'"),
    "factory raises": (lambda d: {"model": "nettrim_test_nets:broken"},
                       "the factory raised RuntimeError: no weights for you"),
    "factory returns a list": (lambda d: {"model": "nettrim_test_nets:not_a_module"},
                               "returned a list, not a torch.nn.Module"),
    "bad factory string": (lambda d: {"model": "nettrim_test_nets.build"}, "must name a factory as module.path:function"),
    "weights of another shape": (lambda d: {"model": "nettrim_test_nets:wide"},
                                 "'fc1.weight' has shape [32, 64], the model's is [48, 64]"),
    "weights missing a tensor": (lambda d: {"weights": _state(d, drop="fc2.bias")}, "it has no tensor 'fc2.bias'"),
    "weights with an extra tensor": (lambda d: {"weights": _state(d, extra="fc3.weight")},
                                     "it has 'fc3.weight', which the model has not"),
    "weights of another dtype": (lambda d: {"weights": _state(d, double=True)}, "is float64, the model's is float32"),
    "weights needing pickle": (lambda d: {"weights": _save(d / "payload.pt", {"fc1.weight": _Payload()})},
                               "needs pickle beyond torch.load(weights_only=True)"),
    "weights not a state dict": (lambda d: {"weights": _save(d / "list.pt", [torch.zeros(2)])}, "not a state dict"),
    "npz without y": (lambda d: {"data": _npz(d, x=np.zeros((4, 1, 8, 8), np.float32))}, "has no array 'y'"),
    "npz without x": (lambda d: {"data": _npz(d, y=np.zeros(4, np.int64))}, "has no array 'x'"),
    "x and y lengths differ": (lambda d: {"data": _npz(d, x=np.zeros((10, 1, 8, 8), np.float32), y=np.zeros(9, np.int64))},
                               "x has 10 samples but y has 9 labels"),
    "labels not integers": (lambda d: {"data": _npz(d, x=np.zeros((10, 1, 8, 8), np.float32), y=np.full(10, 0.5))},
                            "y must hold integer class indices"),
    "npz holding a pickle": (lambda d: {"data": _pickled_npz(d)}, "a pickle"),
    "not an npz at all": (lambda d: {"data": _text(d / "junk.npz")}, "cannot read"),
    "npy dir without y.npy": (lambda d: {"data": _npy_dir(d, y=False)}, "y.npy missing"),
    "image folder of one class": (lambda d: {"data": _images(d, classes=1)}, "at least two"),
    "unreadable image": (lambda d: {"data": _images(d, junk=True)}, "cannot read image"),
    "images of two sizes": (lambda d: {"data": _images(d, sizes=True)}, "images differ in size"),
    "model does not run on the data": (lambda d: {"data": _npz(d, x=np.zeros((10, 3, 5), np.float32), y=np.zeros(10, np.int64))},
                                       "the model does not run on"),
    "labels beyond the outputs": (lambda d: {"data": _npz(d, x=np.zeros((10, 1, 8, 8), np.float32), y=np.arange(10))},
                                  "labels up to 9 but the model has 4 outputs"),
    "checkpoint and --model": (lambda d: {"checkpoint": d / "net.pt"}, "not both"),
    "no model at all": (lambda d: {"model": None}, "give the model"),
    "--model without --weights": (lambda d: {"weights": None}, "needs --weights"),
    "rival with --epsilon": (lambda d: {"extra": ["--method", "wanda", "--epsilon", "0.1"]}, "is a Net-Trim option"),
    "rival without a target": (lambda d: {"extra": ["--method", "lobs"]}, "prunes to a count: pass --sparsity"),
    "sparsity out of range": (lambda d: {"extra": ["--method", "lobs", "--sparsity", "1.5"]}, "--sparsity must lie in (0, 1)"),
    "data-dir with a path": (lambda d: {"extra": ["--data-dir", str(d)]}, "--data-dir is for the named datasets"),
}


def _save(path, obj):
    torch.save(obj, path)
    return path


def _state(d, drop=None, extra=None, double=False):
    state = torch.load(d / "net.pt", weights_only=True)
    state.pop(drop, None)
    if extra:
        state[extra] = torch.zeros(2)
    if double:
        state = {k: v.double() for k, v in state.items()}
    return _save(d / "state.pt", state)


def _npz(d, **arrays):
    np.savez(d / "data.npz", **arrays)
    return d / "data.npz"


def _text(path):
    path.write_text("not numpy\n")
    return path


def _npy_dir(d, y=True):
    write_npy_dir(d / "npy", *patterns(3, 0))
    if not y:
        (d / "npy" / "y.npy").unlink()
    return d / "npy"


def _images(d, classes=4, junk=False, sizes=False):
    from PIL import Image

    x, y = patterns(3, 0)
    keep = y < classes
    root = write_image_folder(d / "images", x[keep], y[keep])
    if junk:
        (root / CLASSES[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    if sizes:
        Image.new("L", (9, 8)).save(root / CLASSES[1] / "wide.png")
    return root


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_are_one_line_and_nothing_is_written(case, files, nets, tmp_path, capsys):
    make, match = BAD[case]
    work = tmp_path / "work"
    work.mkdir()
    for name in ("net.pt",):
        (work / name).write_bytes((files / name).read_bytes())
    given = {"model": "nettrim_test_nets:build", "weights": work / "net.pt", "data": files / "train.npz",
             "checkpoint": None, "extra": [], **make(work)}
    out = tmp_path / "out"
    argv = ["--no-progress", "prune"] + ([str(given["checkpoint"])] if given["checkpoint"] else [])
    argv += ["--model", given["model"]] if given["model"] else []
    argv += ["--weights", str(given["weights"])] if given["weights"] else []
    argv += ["--data", str(given["data"]), "--samples", "50", "--out", str(out), *given["extra"]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err, err
    assert not out.exists()
    assert "this must never run" not in captured.out


@pytest.mark.parametrize("command", ["eval", "export"])
def test_eval_and_export_refuse_bad_files_in_one_line(command, files, nets, tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    argv = [command, "--model", "nettrim_test_nets:wide", "--weights", str(files / "net.pt")]
    argv += ["--out", str(out)] if command == "export" else ["--data", str(files / "test.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "'fc1.weight' has shape" in err
    assert not out.exists()


def test_an_image_folder_without_pillow_names_the_extra(files, nets, tmp_path, monkeypatch, capsys):
    import sys

    import nettrim.report.plots  # noqa: F401  matplotlib (which imports Pillow itself) loaded first
    monkeypatch.setitem(sys.modules, "PIL", None)  # then Pillow is gone, as where it is not installed
    out = tmp_path / "out"
    assert main(prune_argv(files, out, data="train_images")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs Pillow: pip install 'nettrim[data]'" in err
    assert not out.exists()


def test_a_nettrim_checkpoint_on_a_data_file_records_a_draw_that_can_be_redrawn(mlp_checkpoint, tmp_path):
    """A nettrim checkpoint pruned on a user's .npz (MNIST images saved as arrays): the split
    comes from the file, the pruned checkpoint records the draw, and the recorded fields draw
    the same calibration inputs again from the file (what verify does), and other ones once
    the file has changed."""
    from nettrim.cli.workflows import Calibration, tensor_sha256
    from nettrim.data import load_dataset, subset

    x, y = load_dataset("mnist", "train")
    xs, ys = subset(x, y, 600, seed=3)
    data = write_npz(tmp_path / "mine.npz", xs.numpy(), ys.numpy())
    out = tmp_path / "out"
    assert main(["--no-progress", "prune", str(mlp_checkpoint), "--data", str(data), "--samples", "300",
                 "--epsilon", "0.1", "--out", str(out)]) == 0
    meta = torch.load(out / "mlp-nettrim-cascade.pt", weights_only=True)["meta"]
    cal = meta["calibration"]
    assert cal["dataset"] == str(data) and cal["validation_size"] == 60 and cal["samples"] == 300
    assert cal["data"]["sha256"] == file_sha256(data) and "validation_accuracy" in meta
    fields = ("dataset", "samples", "seed", "validation_size", "validation_seed", "data_dir")
    again = lambda: tensor_sha256(Calibration(*(cal[k] for k in fields)).draw()[0])
    assert again() == cal["sha256"]
    write_npz(data, xs.numpy()[::-1].copy(), ys.numpy()[::-1].copy())  # the same samples, reordered
    assert again() != cal["sha256"]


def test_a_validation_size_beyond_the_file_is_one_line(files, nets, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(prune_argv(files, out, "--validation-size", "400")) == 2
    err = capsys.readouterr().err.strip()
    assert "--validation-size must lie in 1..399" in err and "\n" not in err and not out.exists()
