"""Hypothesis profiles of the hostile-input suite, and the reliability ledger written at the end.

``default`` (``make test``): a few examples per property, derandomized (the same cases every
run), so the suite stays fast and stable. ``fuzz`` (``make fuzz``): many more, still
derandomized, so that docs/reliability.md reports the same cases each time it is regenerated.
Select with ``HYPOTHESIS_PROFILE=fuzz`` (the environment: this file loads the profile).
"""
import os

import pytest
from hypothesis import HealthCheck, settings

import reliability_helpers

_common = dict(derandomize=True, deadline=None, print_blob=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("default", max_examples=12, **_common)
settings.register_profile("fuzz", max_examples=150, **_common)
# random cases (a new draw every run) for hunting bugs; not for the documented figures
settings.register_profile("explore", max_examples=150, **{**_common, "derandomize": False})
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session", autouse=True)
def _reliability_ledger():
    yield
    reliability_helpers.write_out()
