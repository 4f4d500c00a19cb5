import pytest
import torch

from nettrim.experiments import zoo


@pytest.fixture(scope="session")
def run_quick(tmp_path_factory):
    """Run an experiment's ``main`` on a test preset, one torch thread, with trained models
    cached for the whole session; returns (out_dir, payload)."""
    cache = tmp_path_factory.getbasetemp() / "nettrim-cache"

    def run(module, preset, name):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv(zoo.CACHE_ENV, str(cache))
                out = tmp_path_factory.mktemp(name)
                return out, module.main(out, preset, seed=0, progress=False)
        finally:
            torch.set_num_threads(threads)

    return run
