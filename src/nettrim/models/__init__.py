"""Reference models, training, masked fine-tuning, evaluation and checkpoints."""
from .architectures import ARCHITECTURES, build_model, cifar_cnn, lenet5, lenet_demo, mlp, resnet20, vit_tiny
from .checkpoint import export_safetensors, load_checkpoint, save_checkpoint
from .training import (PRUNABLE, TrainLog, count_nonzero, evaluate, finetune, masks_from_model,
                       predict, prunable_layers, train)

__all__ = ["ARCHITECTURES", "build_model", "mlp", "lenet5", "lenet_demo", "cifar_cnn", "resnet20", "vit_tiny",
           "TrainLog", "train", "finetune", "masks_from_model", "evaluate", "predict",
           "count_nonzero", "prunable_layers", "PRUNABLE",
           "save_checkpoint", "load_checkpoint", "export_safetensors"]
