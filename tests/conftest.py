import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    """Tests run with one torch thread: small problems are faster, and CI machines are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Each test starts from the same global RNG state, so no result depends on test order
    (module-scoped fixtures that build models seed themselves)."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fashion_mnist():
    """For tests that read Fashion-MNIST: skipped only where `make fashion-mnist` recorded that
    the install is impossible here (the recorded reason is the skip reason). Where it was never
    tried the test runs, and fails on the missing data: `make test` installs it first."""
    from nettrim.data import readers

    marker = readers.FASHION_DIRS[0].with_name("fashion-mnist.unavailable")
    if not readers.fashion_mnist_dir().is_dir() and marker.is_file():
        pytest.skip(marker.read_text().strip())


@pytest.fixture(scope="session")
def mlp_checkpoint(tmp_path_factory):
    """An mlp-60-60 checkpoint trained for one epoch on 2,000 MNIST images (one thread), for the
    CLI tests that need a real trained network on disk."""
    from nettrim.data import load_dataset, subset
    from nettrim.models import build_model, save_checkpoint, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = load_dataset("mnist", "train")
    xs, ys = subset(x, y, 2000, seed=0)
    torch.manual_seed(0)
    model = build_model("mlp-60-60")
    train(model, xs, ys, epochs=1, seed=0, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    save_checkpoint(path, model, "mlp-60-60", {}, {"dataset": "mnist"})
    torch.set_num_threads(threads)
    return path


def _write_cifar_batches(root, writer, n: int = 4, seed: int = 0) -> dict:
    """The six CIFAR-10 python batches (data_batch_1..5, test_batch) of ``n`` random images
    each, written into ``root`` by ``writer(path, data, labels, batch_label)``; returns
    {name: (data (n, 3072) uint8, labels)}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        writer(root / name, data, labels, name.encode())
        written[name] = (data, labels)
    return written


@pytest.fixture
def cifar_batches():
    """``cifar_batches(root, writer, n=4, seed=0)``: write the six CIFAR-10 batches with a
    test's own batch writer (pickle.dump, or bytes as Python 2's cPickle wrote them)."""
    return _write_cifar_batches
