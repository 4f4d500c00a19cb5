"""The fixtures of the verify tests (defined in verify_helpers, shared with the test files)."""
from verify_helpers import cascade, mnist_mlp, mnist_prunes, pruned  # noqa: F401  (fixtures)
