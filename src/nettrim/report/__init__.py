"""Reports and plots: JSON (atomic), terminal tables, figures."""
from .io import save_figure_atomic, save_torch_atomic, write_json_atomic
from .tables import layer_table

__all__ = ["write_json_atomic", "save_figure_atomic", "save_torch_atomic", "layer_table"]
