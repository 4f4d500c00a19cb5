"""One status vocabulary for layers, networks and searches (a ``str`` enum: it compares equal
to, and serializes as, its value)."""
from enum import StrEnum


class Status(StrEnum):
    """How a layer solve, a network prune or a budget search ended.

    * ``solved``: the solver met its stopping rule and the constraints were measured to hold.
    * ``max_iterations``: the solver stopped at its cap; the report's ``certified`` says whether
      the constraints hold anyway.
    * ``infeasible``: no weights can meet the tolerance (the least-squares fit misses it).
    * ``thresholded``: the weights were set by hard thresholding (the Threshold method, or a
      sparsity search that ended by thresholding a solve): no tolerance was enforced.
    * ``fitted``: a method without a tolerance (L-OBS, DC) returned its weights.
    * ``target_missed``: a method could not reach the requested count.
    * ``skipped``: the layer was left as it was (not among ``layers``).
    * ``budget_unreachable``: ``shrink`` found no tolerance within the accuracy budget.
    """

    SOLVED = "solved"
    MAX_ITERATIONS = "max_iterations"
    INFEASIBLE = "infeasible"
    THRESHOLDED = "thresholded"
    FITTED = "fitted"
    TARGET_MISSED = "target_missed"
    SKIPPED = "skipped"
    BUDGET_UNREACHABLE = "budget_unreachable"
