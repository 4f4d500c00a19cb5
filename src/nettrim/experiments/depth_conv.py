"""The depth analysis of :mod:`.depth` on a convolutional network: LeNet-5 (two 5x5 conv
layers, 6 and 16 channels, then 120-84-10) trained on Fashion-MNIST, beside the MLP.

Everything is as in :mod:`.depth` (thresholding one layer / every layer from l on; Net-Trim on
one layer at a time against thresholding that layer to Net-Trim's count). A conv layer's
program sees every patch of the calibration images (``capture_layer``'s rows), and its
response error is measured on the same patch rows. Full preset: 3 seeds, on 3,000 test images
and 300 calibration images (a conv forward pass over the full test set, 70 times per seed, did
not fit on the shared machine).
"""
from __future__ import annotations

from pathlib import Path

from . import depth

JSON_NAME = "depth_conv.json"
PNG_NAME = "depth_conv.png"

NET = dict(arch="lenet5", dataset="fashion-mnist", dropout=0.0)
QUICK = depth.Preset(
    name="quick", net=dict(NET, epochs=2, train_samples=5000),
    sparsities=(0.0, 0.5, 0.8, 0.9, 0.95), epsilons=(0.1,), samples=128, test_samples=2000,
    description="LeNet-5, 2 epochs on 5k Fashion-MNIST images; thresholding at 0-95 %; "
                "Net-Trim per layer at g = 0.1 on 128 samples; 2,000 test images.")
FULL = depth.Preset(
    name="full", net=dict(NET, epochs=5, train_samples=None),
    sparsities=(0.0, 0.5, 0.8, 0.9, 0.95), epsilons=(0.05, 0.2), samples=300,
    test_samples=3000, seeds=3,
    description="LeNet-5 (conv 6, conv 16, 120, 84, 10), 5 epochs on all Fashion-MNIST; "
                "thresholding at 0-95 %; Net-Trim per layer at g = 0.05, 0.2 on 300 samples "
                "(every conv patch of them); 3,000 test images; 3 seeds (network and "
                "calibration draw).")
PRESETS = {"quick": QUICK, "full": FULL}


def main(out_dir: Path, preset: str | depth.Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset and write ``depth_conv.json`` and ``depth_conv.png`` into ``out_dir``."""
    return depth.main(out_dir, preset, seed, progress=progress, presets=PRESETS,
                      experiment="depth-conv", files=(JSON_NAME, PNG_NAME))


markdown_section = depth.markdown_section
