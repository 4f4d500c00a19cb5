"""compressed-tensors directories of transformers models (GPT-2, BERT) built from configs,
pruned to 50 % by magnitude: transformers' from_pretrained gives back the same outputs, and
the stored tensors decode to the model's, bit for bit."""
import importlib.util
import json

import pytest
import torch

import nettrim
from nettrim.errors import NettrimError
from nettrim.export import compressed

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'nettrim[hf]')")


def _loads_sparse_bitmask() -> str | None:
    """Why the installed transformers cannot read sparse-bitmask directories, or None."""
    from packaging.version import Version

    if Version(transformers.__version__) >= Version("4.56"):
        return f"transformers {transformers.__version__} does not read sparse-bitmask (needs < 4.56)"
    if importlib.util.find_spec("compressed_tensors") is None:
        return "compressed-tensors is not installed"
    if importlib.util.find_spec("compressed_tensors.compressors.sparse_compressors") is None:
        return "the installed compressed-tensors dropped the sparse-bitmask format (needs < 0.15)"
    if importlib.util.find_spec("accelerate") is None:
        return "accelerate is not installed (transformers needs it to load compressed models)"
    return None


LOADS = _loads_sparse_bitmask()
needs_loader = pytest.mark.skipif(LOADS is not None, reason=LOADS or "")


def magnitude_prune(model: torch.nn.Module, fraction: float = 0.5) -> torch.nn.Module:
    """Zero the ``fraction`` smallest-magnitude entries of every linear layer's weight
    (nn.Linear and transformers' Conv1D), with +0.0."""
    with torch.no_grad():
        for module in model.modules():
            if compressed._is_targetable(module):
                w = module.weight
                k = int(fraction * w.numel())
                cut = w.abs().flatten().kthvalue(k).values
                w.copy_(torch.where(w.abs() > cut, w, torch.zeros_like(w)))
    return model.eval()


def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=32, vocab_size=97)
    model = magnitude_prune(transformers.GPT2LMHeadModel(config))
    return model, transformers.AutoModelForCausalLM, {"input_ids": torch.randint(0, 97, (3, 11))}


def tiny_bert():
    torch.manual_seed(1)
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=101, max_position_embeddings=32,
                                     num_labels=3)
    model = magnitude_prune(transformers.BertForSequenceClassification(config))
    ids = torch.randint(0, 101, (3, 9))
    return model, transformers.AutoModelForSequenceClassification, {
        "input_ids": ids, "attention_mask": torch.ones_like(ids)}


def tiny_resnet():
    """Its 7x7 stem convolution and classifier are stored as bitmasks; the 3x3 convolutions
    stay dense (8 bytes of row offset per 3 weights would cost more than they save)."""
    torch.manual_seed(2)
    config = transformers.ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                       layer_type="basic", num_labels=10)
    model = magnitude_prune(transformers.ResNetForImageClassification(config))
    return model, transformers.AutoModelForImageClassification, {"pixel_values": torch.rand(2, 1, 32, 32)}


MODELS = {"gpt2": tiny_gpt2, "bert": tiny_bert, "resnet": tiny_resnet}
TARGETS = {"gpt2": 8, "bert": 14, "resnet": 2}  # linear layers (and convolutions) stored as bitmasks


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of ``t`` (so that NaN payloads and the sign of zero compare exactly)."""
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().view(view)


def outputs(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("name", MODELS)
def test_stored_tensors_decode_to_the_model_bit_for_bit(name, tmp_path):
    model, _, _ = MODELS[name]()
    info = nettrim.export(model, tmp_path / "ct", format="compressed-tensors")
    assert info.path.is_dir() and info.bytes == sum(p.stat().st_size for p in info.path.iterdir())
    config = json.loads((info.path / "config.json").read_text())["quantization_config"]
    sparsity = config["sparsity_config"]
    assert config["quant_method"] == "compressed-tensors" and sparsity["format"] == "sparse-bitmask"
    assert 0.45 < sparsity["global_sparsity"] < 0.55 and len(sparsity["targets"]) == TARGETS[name]
    stored = compressed.read_state(info.path)
    want = model.state_dict()
    for key, t in stored.items():
        assert t.dtype == want[key].dtype and torch.equal(bits(t), bits(want[key])), key
    missing = set(want) - set(stored)
    assert missing <= {"lm_head.weight"}  # the tied output layer, written by its source


@needs_loader
@pytest.mark.parametrize("name", MODELS)
def test_from_pretrained_gives_back_the_pruned_model(name, tmp_path):
    model, auto, batch = MODELS[name]()
    info = nettrim.export(model, tmp_path / "ct", format="compressed-tensors")
    back = auto.from_pretrained(str(info.path), torch_dtype="auto").eval()
    torch.testing.assert_close(outputs(back, batch), outputs(model, batch), atol=1e-5, rtol=0)
    got, want = back.state_dict(), model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)  # zeros included: the same sparsity


def test_the_directory_is_smaller_than_save_pretrained(tmp_path):
    model, _, _ = tiny_bert()
    dense = tmp_path / "dense"
    model.save_pretrained(str(dense))
    sparse = nettrim.export(model, tmp_path / "ct", format="compressed-tensors").bytes
    dense_bytes = sum(p.stat().st_size for p in dense.iterdir())
    targeted = sum(m.weight.numel() * 4 for m in model.modules() if compressed._is_targetable(m))
    # each targeted weight saves half its values, less 1 bit per entry and 8 bytes per row
    # (rows of 32 or 64 entries here: 1/4 or 1/8 of a row's bytes) and its header entries
    assert sparse < dense_bytes - 0.25 * targeted


def test_a_model_that_is_not_a_transformers_model_is_refused(tmp_path):
    with pytest.raises(NettrimError, match="is for Hugging Face transformers models") as exc_info:
        nettrim.export(torch.nn.Linear(3, 2), tmp_path / "ct", format="compressed-tensors")
    assert "\n" not in str(exc_info.value) and list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_replaced_only_with_force(tmp_path):
    model, _, _ = tiny_gpt2()
    out = tmp_path / "ct"
    nettrim.export(model, out, format="compressed-tensors")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(NettrimError, match="already exists"):
        nettrim.export(model, out, format="compressed-tensors")
    nettrim.export(model, out, format="compressed-tensors", force=True)
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct"]  # nothing left beside it
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep")
    with pytest.raises(NettrimError, match="does not look like a saved model"):
        nettrim.export(model, tmp_path / "home", format="compressed-tensors", force=True)
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep"
