"""The convex layer problem and its solvers (no knowledge of torch.nn modules)."""
from .admm import ADMMSettings, solve_admm
from .api import trim_layer
from .problem import LayerProblem, append_ones, split_budget
from .result import INFEASIBLE, MAX_ITERATIONS, SOLVED, LayerResult

__all__ = ["ADMMSettings", "LayerProblem", "LayerResult", "trim_layer", "solve_admm",
           "append_ones", "split_budget", "SOLVED", "MAX_ITERATIONS", "INFEASIBLE"]
