"""Dataset layer: MNIST, Fashion-MNIST, CIFAR-10 and SVHN as normalized tensors."""
from .api import clear_cache, load_dataset, load_raw, normalize
from .idx import read_idx
from .registry import DATASETS, SPLITS, DatasetInfo, dataset_info
from .sampling import make_loader, subset

__all__ = ["DATASETS", "SPLITS", "DatasetInfo", "dataset_info", "load_dataset", "load_raw",
           "normalize", "read_idx", "subset", "make_loader", "clear_cache"]
