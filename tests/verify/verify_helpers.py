"""Pruned networks for the verify tests: a small MLP trained on MNIST, pruned by Net-Trim in
cascade and in parallel, its report read back through JSON as a user's file would be; and
random-data MLPs for the other kinds of report (a count target, one ball per neuron, a method
without claims, a folded BatchNorm)."""
import contextlib
import copy
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from nettrim import api
from nettrim.errors import NettrimError
from nettrim.methods import NetTrim
from nettrim.verify import verify

QUIET = api.RunOptions(progress=False)
KEEP = object()  # an argument left as the prune gave it


@dataclass
class Pruned:
    """What a user holds after a prune: the original, the pruned model, the calibration draw and
    the report as JSON data."""

    original: nn.Module
    model: nn.Module
    inputs: torch.Tensor
    report: dict
    prune_report: object = None  # the PruneReport object itself

    def verify(self, *, original=KEEP, model=KEEP, inputs=KEEP, report=KEEP, **kw):
        """verify on this prune, with any of its four parts replaced."""
        pick = lambda given, own: own if given is KEEP else given  # noqa: E731
        return verify(pick(original, self.original), pick(model, self.model), pick(inputs, self.inputs),
                      pick(report, self.report), **kw)

    def edited(self, edit) -> dict:
        """A deep copy of the report after ``edit(copy)``."""
        out = copy.deepcopy(self.report)
        edit(out)
        return out

    def tampered(self, layer: str, edit) -> nn.Module:
        """A deep copy of the pruned model with ``edit(weight)`` applied in place to one layer's weight."""
        out = copy.deepcopy(self.model)
        with torch.no_grad():
            edit(out.get_submodule(layer).weight)
        return out


def as_json(report) -> dict:
    return json.loads(json.dumps(report.to_dict(), allow_nan=False))


def refused(pruned: Pruned, what: str = "", **kw):
    """verify on a hostile case: either a one-line NettrimError (returned as its message) or a
    Verification that fails (returned); anything else (a traceback, "hold", "no_claims") fails
    the test."""
    try:
        v = pruned.verify(**kw)
    except NettrimError as exc:
        text = str(exc)
        assert text and "\n" not in text, f"{what}: not one line: {text!r}"
        return text
    assert v.status == "fail" and v.exit_code == 1, f"{what}: {v.summary()}"
    assert "\n" not in v.summary()
    return v


@contextlib.contextmanager
def one_thread():
    """One torch thread (session fixtures are built before the per-test thread fixture runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_mlp():
    """784-32-16-10 trained two epochs on 2,000 MNIST images; 256 calibration images."""
    from nettrim.data import load_dataset, subset
    from nettrim.models import mlp, train

    x, y = load_dataset("mnist", "train")
    xs, ys = subset(x, y, 2000, seed=0)
    torch.manual_seed(0)
    model = mlp((32, 16))
    with one_thread():
        train(model, xs, ys, epochs=2, seed=0, progress=False)
    return model.eval(), xs[:256].clone()


@pytest.fixture(scope="session")
def mnist_prunes(mnist_mlp):
    """mode -> the MNIST MLP pruned by NetTrim(epsilon=0.3) in that mode (each pruned once)."""
    model, x = mnist_mlp
    done = {}

    def get(mode: str) -> Pruned:
        if mode not in done:
            with one_thread():
                result = api.prune(model, x, NetTrim(epsilon=0.3), mode=mode, run=QUIET)
            done[mode] = Pruned(model, result.model, x, as_json(result.report), result.report)
        return done[mode]

    return get


@pytest.fixture(scope="session", params=["cascade", "parallel"])
def pruned(request, mnist_prunes) -> Pruned:
    return mnist_prunes(request.param)


@pytest.fixture(scope="session")
def cascade(mnist_prunes) -> Pruned:
    return mnist_prunes("cascade")


def random_mlp(seed=0, widths=(20, 40, 24, 5)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def random_inputs(n=300, dim=20, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g)


def pruned_random(method, *, mode="cascade", model=None, x=None, **kw) -> Pruned:
    model = random_mlp() if model is None else model
    x = random_inputs() if x is None else x
    kw.setdefault("run", QUIET)
    result = api.prune(model, x, method, mode=mode, **kw)
    return Pruned(model, result.model, x, as_json(result.report))
