"""Capture of layer inputs and outputs from any PyTorch model."""
from .activations import capture_layer, network_output
from .adapters import ADAPTERS, adapter_for
from .batchnorm import fold_batchnorm
from .conv import ConvAdapter
from .graph import LayerSpec, trace_layers

__all__ = ["capture_layer", "network_output", "trace_layers", "LayerSpec", "adapter_for", "ADAPTERS",
           "ConvAdapter", "fold_batchnorm"]
