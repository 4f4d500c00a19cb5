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
