"""backend="ray" against backend="local": the same pruned weights and reports; bad input in one line."""
import os
import subprocess
import sys
from typing import ClassVar

import pytest
import torch
from torch import nn

import nettrim
from nettrim import NetTrim, NettrimError, prune
from nettrim.layer import ADMMSettings
from nettrim.models import build_model
from nettrim.pruners import LayerOutcome, PruningMethod
from nettrim.pruners.base import method_options
from nettrim.pruners.backend import LocalBackend, RayBackend, make_backend, neuron_blocks

try:  # the workers cannot import this module: its functions travel by value
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
except ImportError:
    pass

FAST = ADMMSettings(max_iterations=400)


def wide_net() -> tuple[nn.Module, torch.Tensor]:
    """Two hidden layers of 260 units: two blocks of output neurons each."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 260), nn.ReLU(), nn.Linear(260, 260), nn.ReLU(), nn.Linear(260, 10))
    return net, torch.randn(300, 30)


def assert_same(a, b) -> None:
    """The same weights bit for bit, and the same report numbers."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for ra, rb in zip(a.report.layers, b.report.layers, strict=True):
        assert (ra.name, ra.nnz_after, ra.certified, ra.status, ra.epsilon, ra.discrepancy) == \
               (rb.name, rb.nnz_after, rb.certified, rb.status, rb.epsilon, rb.discrepancy)
    assert a.report.bound == b.report.bound


def test_blocks_cover_the_neurons_and_stay_large():
    assert neuron_blocks(10, 785) == [(0, 10)]
    assert neuron_blocks(100, 300) == [(0, 100)]
    assert neuron_blocks(300, 785) == [(0, 150), (150, 300)]
    assert neuron_blocks(512, 4608) == [(0, 512)]  # a block at least N / 8 wide
    assert neuron_blocks(4096, 4096) == [(i * 512, (i + 1) * 512) for i in range(8)]
    blocks = neuron_blocks(5000, 100)
    assert len(blocks) == 16 and blocks[-1][1] == 5000
    assert all(b[0] == a[1] for a, b in zip(blocks, blocks[1:]))


class Counting(LocalBackend):
    """The local backend, recording each map's function and number of items."""

    calls: list = []

    def map(self, fn, items, shared):
        items = list(items)
        self.calls.append((fn.__name__, len(items)))
        return super().map(fn, items, shared)


@pytest.mark.parametrize("mode, calls", [
    ("parallel", [("solve_job", 3), ("_solve_block", 2), ("_solve_block", 2)]),
    ("cascade", [("_solve_block", 2), ("_solve_block", 2)]),
])
def test_what_is_mapped(mode, calls):
    """parallel: the three layers, and the two blocks of each 260-unit layer; cascade: the blocks."""
    net, X = wide_net()
    Counting.calls = []
    prune(net, X, method=NetTrim(per_neuron=True, settings=FAST), mode=mode, progress=False,
          backend=Counting())
    assert Counting.calls == calls


@pytest.mark.parametrize("mode", ["parallel", "cascade"])
def test_per_neuron_ray_equals_local(ray_session, mode):
    """parallel: the layers are tasks, each layer's neuron blocks tasks of their own; cascade:
    the layers one after the other, their neuron blocks tasks."""
    net, X = wide_net()
    method = NetTrim(per_neuron=True, settings=FAST)
    local = prune(net, X, method=method, mode=mode, progress=False)
    ray_ = prune(net, X, method=method, mode=mode, progress=False, backend="ray")
    assert_same(local, ray_)
    assert all(r.certified for r in ray_.report.layers)


def test_parallel_layers_as_tasks_on_mlp_60_60(ray_session):
    torch.manual_seed(1)
    net = build_model("mlp-60-60")
    X = torch.rand(200, 1, 28, 28)
    method = NetTrim(epsilon=0.2, settings=FAST)
    assert_same(prune(net, X, method=method, mode="parallel", progress=False),
                prune(net, X, method=method, mode="parallel", progress=False, backend="ray"))


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


@method_options
class KillsItsWorker(PruningMethod):
    """A method whose layer method kills the process it runs in on layer "2" and keeps the
    other layers as they are."""

    name: ClassVar[str] = "kills-its-worker"
    needs_target: ClassVar[bool] = False

    def layer_method(self, mode, target):
        return _kill_on_layer_2


def _kill_on_layer_2(job):
    if job.spec.name == "2":
        os._exit(1)
    return LayerOutcome(job.weight, job.bias)


def test_a_worker_killed_mid_prune_is_one_line_and_returns_nothing(ray_session):
    net, X = wide_net()
    with pytest.raises(NettrimError, match=r"^a Ray task was lost \(.*\); nothing was written: run again$"):
        prune(net, X, method=KillsItsWorker(), mode="parallel", progress=False,
              backend=RayBackend(max_retries=0))


def test_a_lost_task_is_retried(ray_session, tmp_path):
    assert list(RayBackend(max_retries=1).map(_kill_once, [str(tmp_path / "killed")], None)) == [7]


@pytest.mark.parametrize("kwargs, match", [
    (dict(backend="dask"), "unknown backend 'dask'; choose one of local, ray"),
    (dict(backend="local", address="127.0.0.1:6379"), "address names a Ray cluster: it needs backend='ray'"),
    (dict(backend="ray", address="127.0.0.1:1"), "cannot reach the Ray cluster at '127.0.0.1:1'"),
    (dict(backend="ray", address="nowhere"), "address must be 'host:port'"),
])
def test_bad_backend_input_is_one_line(kwargs, match):
    if kwargs["backend"] == "ray":
        pytest.importorskip("ray")
    net, X = wide_net()
    with pytest.raises(NettrimError, match=match) as err:
        prune(net, X, progress=False, **kwargs)
    assert "\n" not in str(err.value)


def test_ray_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(NettrimError, match=r"needs Ray, which is not installed: pip install 'nettrim\[ray\]'"):
        make_backend("ray")
    assert isinstance(make_backend("local"), LocalBackend)


def test_nettrim_imports_and_prunes_without_ray():
    code = ("import sys; sys.modules['ray'] = None\n"
            "import torch, nettrim\n"
            "net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))\n"
            "res = nettrim.prune(net, torch.randn(50, 5), mode='parallel', progress=False)\n"
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


@pytest.mark.parametrize("method", ["threshold", "lobs", "nettrim"])
def test_every_method_at_a_sparsity_runs_its_layers_as_tasks(ray_session, method):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    X = torch.randn(200, 20)
    run = lambda **kw: prune(net, X, method=method, sparsity=0.5, mode="parallel", progress=False, **kw)
    assert_same(run(), run(backend="ray"))


def test_shrink_with_ray_finds_the_local_answer(ray_session):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    X, xv = torch.randn(200, 20), torch.randn(300, 20)
    val = (xv, net(xv).argmax(1))
    run = lambda backend: nettrim.shrink(net, X, val, 0.05, NetTrim(settings=FAST), "parallel",
                                         max_trials=2, progress=False, backend=backend)
    local, remote = run("local"), run(RayBackend())
    assert [t.epsilon for t in local.search] == [t.epsilon for t in remote.search]
    assert_same(local, remote)
