"""Registered architectures with random sparsity patterns, for the export tests."""
import pytest
import torch

from nettrim.models import build_model


def sparsified(arch: str, fraction: float, seed: int = 0, **kwargs) -> torch.nn.Module:
    """``build_model(arch)`` with every tensor of its state dict randomised, then ``fraction``
    of the entries of each tensor set to zero at random positions (BatchNorm buffers and the
    int64 batch counter included)."""
    g = torch.Generator().manual_seed(seed)
    model = build_model(arch, **kwargs).eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g).abs() if t.ndim == 1 else torch.randn(t.shape, generator=g))
            else:
                t.copy_(torch.randint(0, 1000, t.shape, generator=g))
            t.mul_(torch.rand(t.shape, generator=g) >= fraction)
    return model


@pytest.fixture
def sparse_model():
    """:func:`sparsified`, for the tests."""
    return sparsified


@pytest.fixture
def mlp95():
    """LeNet-300-100 (784-300-100-10) with 95 % of every tensor's entries zero."""
    return sparsified("lenet-300-100", 0.95)
