"""backend="ray" against backend="local": the same pruned weights and reports, bit for bit
(each task runs with the thread count of a local test run); bad input in one line.

In a parallel run the layers are independent jobs mapped on the backend; a cascade solves its
layers one after the other in this process. The per-neuron block split of
``nettrim.pruners.backend`` (``solve_neuron_blocks`` over ``nettrim.layer.trim_layer``) maps
blocks of output neurons the same way."""
import os
import subprocess
import sys
from typing import ClassVar

import pytest
import torch
from torch import nn

import nettrim
from nettrim import NetTrim, NettrimError, RunOptions, SearchOptions, prune
from nettrim.methods.base import LayerOutcome, Method
from nettrim.models import build_model
from nettrim.options import options
from nettrim.pruners.backend import LocalBackend, RayBackend, make_backend, neuron_blocks, solve_neuron_blocks

try:  # the workers cannot import this module: its functions travel by value
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
except ImportError:
    pass

FAST = nettrim.ADMMSettings(max_iterations=400)
QUIET = RunOptions(progress=False)


def small_net() -> tuple[nn.Module, torch.Tensor]:
    """Three layers (two ReLU programs and the linear program of the logits)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 10))
    return net, torch.randn(200, 20)


def assert_same(a, b) -> None:
    """The same weights bit for bit, and the same report numbers."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for ra, rb in zip(a.report.layers, b.report.layers, strict=True):
        assert (ra.name, ra.nnz_after, ra.certified, ra.status, ra.discrepancy, ra.response_error) == \
               (rb.name, rb.nnz_after, rb.certified, rb.status, rb.discrepancy, rb.response_error)
        assert (ra.certificate is None) == (rb.certificate is None)
        if ra.certificate is not None:
            assert ra.certificate.epsilon == rb.certificate.epsilon
            assert ra.certificate.measured == rb.certificate.measured
    assert a.report.bound == b.report.bound


class Counting(LocalBackend):
    """The local backend, recording each map's function and number of items."""

    calls: list = []

    def map(self, fn, items, shared):
        items = list(items)
        self.calls.append((fn.__name__, len(items)))
        return super().map(fn, items, shared)


@pytest.mark.parametrize("mode, calls", [("parallel", [("_solve", 3)]), ("cascade", [])])
def test_what_is_mapped(mode, calls):
    """parallel: the three layers as one map on the backend; cascade: none (one after the other here)."""
    net, X = small_net()
    Counting.calls = []
    prune(net, X, NetTrim(per_neuron=True, settings=FAST), mode=mode, run=QUIET.replace(backend=Counting()))
    assert Counting.calls == calls


def test_per_neuron_layers_as_ray_tasks_equal_local(ray_session):
    net, X = small_net()
    method = NetTrim(per_neuron=True, settings=FAST)
    local = prune(net, X, method, mode="parallel", run=QUIET)
    remote = prune(net, X, method, mode="parallel", run=QUIET.replace(backend="ray"))
    assert_same(local, remote)
    assert all(r.certified for r in remote.report.layers)


def test_blocks_cover_the_neurons_and_stay_large():
    assert neuron_blocks(10, 785) == [(0, 10)]
    assert neuron_blocks(100, 300) == [(0, 100)]
    assert neuron_blocks(300, 785) == [(0, 150), (150, 300)]
    assert neuron_blocks(512, 4608) == [(0, 512)]  # a block at least N / 8 wide
    assert neuron_blocks(4096, 4096) == [(i * 512, (i + 1) * 512) for i in range(8)]
    blocks = neuron_blocks(5000, 100)
    assert len(blocks) == 16 and blocks[-1][1] == 5000
    assert all(b[0] == a[1] for a, b in zip(blocks, blocks[1:]))


def _wide_layer():
    """One 260-neuron ReLU layer's inputs and targets (two blocks of 130 neurons)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 30, generator=g)
    Y = torch.relu(X @ torch.randn(30, 260, generator=g) / 5 + 0.1)
    return X, Y


def test_neuron_blocks_on_ray_equal_local(ray_session):
    """solve_neuron_blocks: the same blocks (a function of the shape alone) on either backend,
    the same weights bit for bit; every block within its radii."""
    from nettrim.layer import ADMMSettings

    X, Y = _wide_layer()
    kw = dict(relu=True, settings=ADMMSettings(max_iterations=400))
    Counting.calls = []
    local = solve_neuron_blocks(Counting(), X, Y, 0.2 * float(Y.norm()), **kw)
    remote = solve_neuron_blocks(RayBackend(), X, Y, 0.2 * float(Y.norm()), **kw)
    assert Counting.calls == [("_solve_block", 2)]
    assert torch.equal(local.weight, remote.weight) and torch.equal(local.bias, remote.bias)
    assert local.within and remote.within and local.weight.shape == (260, 30)
    assert (local.per_neuron_discrepancy == remote.per_neuron_discrepancy).all()


def test_parallel_layers_as_tasks_on_mlp_60_60(ray_session):
    torch.manual_seed(1)
    net = build_model("mlp-60-60")
    X = torch.rand(100, 1, 28, 28)
    method = NetTrim(epsilon=0.2, settings=FAST)
    assert_same(prune(net, X, method, mode="parallel", run=QUIET),
                prune(net, X, method, mode="parallel", run=QUIET.replace(backend=RayBackend())))


def _refuse(item, shared):
    if item == "nettrim":
        raise NettrimError(f"layer {item!r} refused")
    raise RuntimeError("first line\nsecond line")


def test_an_error_in_a_task_is_one_line(ray_session):
    with pytest.raises(NettrimError) as err:
        list(RayBackend().map(_refuse, ["nettrim"], None))
    assert str(err.value) == "layer 'nettrim' refused"
    with pytest.raises(NettrimError) as err:
        list(RayBackend().map(_refuse, ["other"], None))
    assert str(err.value) == "a Ray task failed: RuntimeError: first line"


def _kill_worker(item, shared):
    os._exit(1)


def _kill_once(marker, shared):
    """Kills its worker the first time (leaving ``marker``), answers 7 when run again."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return 7


def test_a_killed_worker_is_one_line(ray_session):
    with pytest.raises(NettrimError, match="a Ray task was lost") as err:
        list(RayBackend(max_retries=0).map(_kill_worker, [0], None))
    assert "\n" not in str(err.value)


@options
class KillsItsWorker(Method):
    """A method that kills the process it runs in on layer "2" and keeps the other layers as
    they are."""

    name: ClassVar[str] = "kills-its-worker"
    needs_target: ClassVar[bool] = False
    CHECKS: ClassVar = {}

    def at_tolerance(self, job):
        if job.name == "2":
            os._exit(1)
        return LayerOutcome(job.weight)


def test_a_worker_killed_mid_prune_is_one_line_and_returns_nothing(ray_session):
    net, X = small_net()
    with pytest.raises(NettrimError, match=r"^a Ray task was lost \(.*\); nothing was written: run again$"):
        prune(net, X, KillsItsWorker(), mode="parallel", run=QUIET.replace(backend=RayBackend(max_retries=0)))


def test_a_lost_task_is_retried(ray_session, tmp_path):
    assert list(RayBackend(max_retries=1).map(_kill_once, [str(tmp_path / "killed")], None)) == [7]


@pytest.mark.parametrize("backend, match", [
    ("dask", "RunOptions.backend must be one of 'local', 'ray'"),
    (3, "RunOptions.backend must be"),
    (lambda: RayBackend(address="127.0.0.1:1"), "cannot reach the Ray cluster at '127.0.0.1:1'"),
    (lambda: RayBackend(address="nowhere"), "address must be 'host:port'"),
    (lambda: RayBackend(max_retries=-1), "max_retries must be an integer >= 0"),
    (lambda: RayBackend(threads=0), "threads must be an integer >= 1"),
])
def test_bad_backend_input_is_one_line(backend, match):
    if callable(backend):
        pytest.importorskip("ray")
    net, X = small_net()
    with pytest.raises(NettrimError, match=match) as err:
        prune(net, X, run=QUIET.replace(backend=backend() if callable(backend) else backend))
    assert "\n" not in str(err.value)


def test_make_backend_names_a_bad_choice_in_one_line():
    with pytest.raises(NettrimError, match="unknown backend 'dask'; choose one of local, ray"):
        make_backend("dask")
    with pytest.raises(NettrimError, match="address names a Ray cluster: it needs backend='ray'"):
        make_backend("local", "127.0.0.1:6379")


def test_ray_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(NettrimError, match=r"needs Ray, which is not installed: pip install 'nettrim\[ray\]'"):
        make_backend("ray")
    assert isinstance(make_backend("local"), LocalBackend)


def test_nettrim_imports_and_prunes_without_ray():
    code = ("import sys; sys.modules['ray'] = None\n"
            "import torch, nettrim\n"
            "net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n"
            "res = nettrim.prune(net, torch.randn(50, 5), mode='parallel', run=nettrim.RunOptions(progress=False))\n"
            "assert sys.modules['ray'] is None and len(res.report.layers) == 2\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_an_address_other_than_the_connected_cluster_is_refused(ray_session):
    import socket

    with socket.socket() as listener:  # reachable, but not the cluster this process is on
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(NettrimError, match="Ray is already initialized in this process"):
            make_backend("ray", f"127.0.0.1:{port}")
    current = ray_session.get_runtime_context().gcs_address
    assert isinstance(make_backend("ray", current), RayBackend)


@pytest.fixture
def checkpoint(mlp_checkpoint):
    return mlp_checkpoint


def test_cli_prune_with_ray_writes_the_local_answer(ray_session, checkpoint, tmp_path, capsys):
    from nettrim.cli.main import main

    argv = ["--no-progress", "prune", str(checkpoint), "--samples", "200", "--epsilon", "0.2",
            "--mode", "parallel"]
    assert main([*argv, "--out", str(tmp_path / "local")]) == 0
    assert main([*argv, "--backend", "ray", "--out", str(tmp_path / "ray")]) == 0
    load = lambda d: torch.load(tmp_path / d / "mlp-nettrim-parallel.pt", weights_only=True)["state_dict"]
    a, b = load("local"), load("ray")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flags, match", [
    (["--backend", "dask"], "unknown backend 'dask'"),
    (["--address", "127.0.0.1:6379"], "it needs backend='ray'"),
    (["--backend", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster"),
])
def test_cli_bad_backend_is_one_line_and_writes_nothing(flags, match, checkpoint, tmp_path, capsys):
    from nettrim.cli.main import main

    out = tmp_path / "out"
    assert main(["--no-progress", "prune", str(checkpoint), *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not out.exists()


def _threads(item, shared):
    return torch.get_num_threads()


def test_each_task_runs_with_its_cpu_share(ray_session):
    assert list(RayBackend().map(_threads, [0], None)) == [2]
    assert list(RayBackend().map(_threads, [0, 1, 2], None)) == [1, 1, 1]
    assert list(RayBackend(threads=1).map(_threads, [0], None)) == [1]
    with pytest.raises(NettrimError, match="threads=3 per task, but no Ray node has that many CPUs"):
        RayBackend(threads=3).map(_threads, [0], None)


@pytest.mark.parametrize("method", ["threshold", "lobs", "sparsegpt", NetTrim(settings=FAST, max_solves=2)],
                         ids=["threshold", "lobs", "sparsegpt", "nettrim"])
def test_every_method_at_a_sparsity_runs_its_layers_as_tasks(ray_session, method):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    X = torch.randn(200, 20)
    run = lambda backend: prune(net, X, method, sparsity=0.5, mode="parallel", run=QUIET.replace(backend=backend))
    assert_same(run("local"), run("ray"))


def test_shrink_with_ray_finds_the_local_answer(ray_session):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    X, xv = torch.randn(200, 20), torch.randn(300, 20)
    val = (xv, net(xv).argmax(1))
    run = lambda backend: nettrim.shrink(net, X, val, 0.05, NetTrim(settings=FAST), mode="parallel",
                                         search=SearchOptions(max_trials=2), run=QUIET.replace(backend=backend))
    local, remote = run("local"), run(RayBackend())
    assert [t.knob for t in local.search] == [t.knob for t in remote.search]
    assert [t.validation_accuracy for t in local.search] == [t.validation_accuracy for t in remote.search]
    assert_same(local, remote)
