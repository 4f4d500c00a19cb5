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
