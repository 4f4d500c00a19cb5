"""Capture of layer inputs and outputs from any PyTorch model."""
from .activations import Capture, capture_layer, capture_rows, network_output
from .adapters import ADAPTERS, adapter_for
from .batchnorm import fold_batchnorm, has_batchnorm
from .conv import ConvAdapter
from .dataflow import plain_forward
from .graph import LayerSpec, is_chain, trace_layers
from .memory import parse_memory

__all__ = ["capture_layer", "capture_rows", "Capture", "parse_memory", "network_output", "trace_layers",
           "LayerSpec", "is_chain", "adapter_for", "ADAPTERS", "ConvAdapter", "fold_batchnorm", "has_batchnorm", "plain_forward"]
