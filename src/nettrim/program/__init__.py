"""The layer program apart from its solvers: statistics, problem, constraint, penalty.
Nothing here knows an ``nn.Module``."""
from .constraint import FLOOR, Constraint, Measurement
from .penalty import Penalty, group_soft_threshold, soft_threshold
from .problem import LayerProblem, slack
from .stats import LayerStats, StatsBuilder, stats_of_rows, with_ones

__all__ = ["FLOOR", "Constraint", "Measurement", "Penalty", "LayerProblem", "LayerStats",
           "StatsBuilder", "stats_of_rows", "with_ones", "slack", "soft_threshold",
           "group_soft_threshold"]
