import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    """Tests run with one torch thread: small problems are faster, and CI machines are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
