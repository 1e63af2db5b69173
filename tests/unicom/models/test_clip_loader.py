"""create_clip: local weights only, seeded random init, download tags refused, TinyCLIP-demo."""
from __future__ import annotations

import json

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from unicom.models.clip_loader import DEMO_MODEL, create_clip, load_state_dict_safely, model_dims  # noqa: E402


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny():
    return create_clip(DEMO_MODEL, "none")


def test_demo_config_is_registered_and_small(tiny):
    model, preprocess, tokenizer = tiny
    assert DEMO_MODEL in open_clip.list_models()
    assert sum(p.numel() for p in model.parameters()) < 10_000_000
    dims = model_dims(model)
    assert dims["image_size"] == 64 and dims["embed_dim"] == 64
    assert not model.training
    tok = tokenizer(["a red circle", "digit 3"])
    assert tok.shape == (2, 32) and tok.dtype == torch.long
    from PIL import Image

    x = preprocess(Image.new("RGB", (96, 80), (200, 10, 10)))
    assert x.shape == (3, 64, 64)
    with torch.inference_mode():
        assert model.encode_image(x[None]).shape == (1, 64)
        assert model.encode_text(tok).shape == (2, 64)


def test_random_init_is_deterministic_and_leaves_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again, _, _ = create_clip(DEMO_MODEL, "none")
    assert torch.equal(torch.rand(3), expected), "create_clip moved the caller's RNG"
    assert _same(again, tiny[0])


def test_local_weights_file_pt_and_safetensors(tiny, tmp_path):
    import copy

    model = copy.deepcopy(tiny[0])
    with torch.no_grad():  # make the weights differ from the seeded random init
        for p in model.parameters():
            p.add_(0.01)
    pt = tmp_path / "w.pt"
    torch.save(model.state_dict(), pt)
    loaded, _, _ = create_clip(DEMO_MODEL, str(pt))
    assert _same(loaded, model) and not _same(loaded, tiny[0])
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    loaded2, _, _ = create_clip(DEMO_MODEL, str(st))
    assert _same(loaded2, model)
    sd = load_state_dict_safely(pt)
    assert set(sd) == set(model.state_dict())


class _Config:
    """A class a training script might pickle next to its weights."""


def test_pickled_objects_are_refused_saying_what_and_how_to_convert(tiny, tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny[0].state_dict(), "cfg": _Config()}, bad)
    for load in (load_state_dict_safely, lambda p: create_clip(DEMO_MODEL, str(p))):  # ours, and open_clip's loader
        with pytest.raises(ValueError) as info:
            load(bad)
        msg = str(info.value)
        assert f"refusing to load {bad}" in msg and "_Config object" in msg and "\n" not in msg
        assert "safetensors.torch.save_file" in msg and "weights_only=False" not in msg


def test_local_dir_model(tiny, tmp_path):
    model = tiny[0]
    cfg = open_clip.get_model_config(DEMO_MODEL)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    loaded, pre, tok = create_clip(f"local-dir:{tmp_path}", "")
    assert _same(loaded, model)
    assert tok(["x"]).shape[-1] == cfg["text_cfg"]["context_length"]
    random_dir, _, _ = create_clip(f"local-dir:{tmp_path}", "none")  # its config, seeded random weights
    assert _same(random_dir, model)  # same config and seed as the named model's random init


def test_unknown_tags_missing_files_and_uncached_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="laion2b_s34b_b79k"):  # the error lists the model's tags
        create_clip("ViT-B-32", "no_such_tag")
    with pytest.raises(FileNotFoundError):
        create_clip(DEMO_MODEL, str(tmp_path / "missing.bin"))
    with pytest.raises(ValueError, match="no weights"):
        create_clip(DEMO_MODEL, "")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        create_clip("NoSuchModel-1", "none")
    # offline (the test suite sets HF_HUB_OFFLINE=1) and not in the cache: one clear error
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="Hugging Face cache"):
        create_clip(DEMO_MODEL, "hf-hub:unicom-test/not-cached")
