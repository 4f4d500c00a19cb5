import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray with 2 CPUs for the whole test session, shut down at its end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
