"""The workflows behind the CLI on a fresh machine: a model trained where none is cached."""
import torch

from nettrim.cli import workflows as wf
from nettrim.models import build_model, load_checkpoint


def test_a_freshly_trained_model_comes_from_the_one_cache_with_its_split_held_out(tmp_path, monkeypatch):
    """The demo's path when nothing is cached: the model is trained into the model cache with
    its recipe (dropout included) and without the validation split, and loads from there."""
    from nettrim.experiments import zoo

    torch.set_num_threads(1)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    model, info = wf.load_or_train("lenet-300-100", "mnist", epochs=1, progress=False,
                                   log=lambda *_: None)
    saved = load_checkpoint(info["path"])[1]
    assert saved["arch_kwargs"]["dropout"] == wf.RECIPES["lenet-300-100"].dropout
    assert saved["meta"]["key"]["validation"] == wf.VALIDATION_SIZE
    build_model("lenet-300-100", **saved["arch_kwargs"]).load_state_dict(model.state_dict())
    again, info2 = wf.load_or_train("lenet-300-100", "mnist", epochs=1, progress=False,
                                    log=lambda *_: None)
    assert info2["cached"] and info2["path"] == info["path"]


def test_training_is_reproducible_from_its_seed(tmp_path):
    """The seed fixes the initial weights as well as the batches: two runs, one model."""
    torch.set_num_threads(1)
    quiet = dict(epochs=1, progress=False, log=lambda *_: None)
    a, meta = wf.train_model("mlp-60-60", "mnist", tmp_path / "a.pt", **quiet)
    b, _ = wf.train_model("mlp-60-60", "mnist", tmp_path / "b.pt", **quiet)
    assert meta["validation"] == {"size": wf.VALIDATION_SIZE, "seed": wf.VALIDATION_SEED}
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
