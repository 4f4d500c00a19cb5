"""The workflows behind the CLI on a fresh machine: a model trained where none is cached."""
import torch

from nettrim.cli import workflows as wf
from nettrim.models import build_model, load_checkpoint


def test_a_freshly_trained_model_carries_the_keywords_it_was_built_with(tmp_path):
    """The demo's path when no checkpoint is cached: the pruned model is saved with the same
    architecture keywords (dropout included), so the checkpoint written next to it loads."""
    torch.set_num_threads(1)
    path = tmp_path / "lenet-300-100.pt"
    model, info = wf.load_or_train(path, "lenet-300-100", "mnist", epochs=1, progress=False,
                                   log=lambda *_: None)
    assert info["arch_kwargs"] == load_checkpoint(path)[1]["arch_kwargs"]
    assert info["arch_kwargs"]["dropout"] == wf.RECIPES["lenet-300-100"].dropout
    build_model("lenet-300-100", **info["arch_kwargs"]).load_state_dict(model.state_dict())


def test_training_is_reproducible_from_its_seed(tmp_path):
    """The seed fixes the initial weights as well as the batches: two runs, one model."""
    torch.set_num_threads(1)
    quiet = dict(epochs=1, progress=False, log=lambda *_: None)
    a, _ = wf.train_model("mlp-60-60", "mnist", tmp_path / "a.pt", **quiet)
    b, _ = wf.train_model("mlp-60-60", "mnist", tmp_path / "b.pt", **quiet)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
