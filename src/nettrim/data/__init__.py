"""Dataset layer: MNIST, Fashion-MNIST, CIFAR-10 and SVHN as normalized tensors."""
from .api import clear_cache, load_dataset, load_raw, normalize
from .idx import read_idx
from .registry import DATASETS, SPLITS, DatasetInfo, dataset_info
from .sampling import make_loader, subset, validation_split

__all__ = ["DATASETS", "SPLITS", "DatasetInfo", "dataset_info", "load_dataset", "load_raw",
           "normalize", "read_idx", "subset", "validation_split", "make_loader", "clear_cache"]
