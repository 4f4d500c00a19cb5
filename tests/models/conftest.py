"""Small synthetic data sets for the models tests."""
import pytest
import torch


def blobs(n: int = 2000, dim: int = 20, n_classes: int = 10, seed: int = 0):
    """Gaussian blobs: class centres at distance ~3 sigma, unit noise."""
    g = torch.Generator().manual_seed(seed)
    centres = 1.5 * torch.randn(n_classes, dim, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


@pytest.fixture(scope="session")
def blob_data():
    """(train_x, train_y, test_x, test_y), 20-dimensional, 10 classes."""
    x, y = blobs(3000)
    return x[:2000], y[:2000], x[2000:], y[2000:]
