"""unicom.load: official-format .pt files (by path and by name), exports, training checkpoints,
eval mode, exactness against a functional reference of the official network, bad input."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

import unicom
from tests.unicom.pretrained.support import random_official_state
from unicom.data.transforms import CLIP_MEAN, CLIP_STD
from unicom.formats.export import save_export
from unicom.models.vit import OFFICIAL_CONFIGS, UnicomViT, ViTConfig, build_vit
from unicom.pretrained import registry
from unicom.pretrained.download import sha256_file
from unicom.pretrained.state_dict import StateDictMismatchError, UnsafeCheckpointError

TINY = "ViT-Tiny/8@32"


def reference_forward(state: dict, x: torch.Tensor, cfg: ViTConfig) -> torch.Tensor:
    """The official network written out as plain functions over its state dict (docs/formats.md,
    "Released Unicom checkpoints"), in the official order of operations."""
    sd = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    b, w, heads = x.shape[0], cfg.width, cfg.heads
    h = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size)
    h = h.flatten(2).transpose(1, 2) + sd["pos_embed"]
    n = h.shape[1]
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        y = F.layer_norm(h, (w,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-5)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"]).reshape(b, n, 3, heads, w // heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        a = a.permute(2, 0, 1, 3).contiguous().view(n, b, w).permute(1, 0, 2)
        h = h + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(h, (w,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-5)
        y = F.linear(F.relu6(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        h = h + y
    h = F.layer_norm(h.float(), (w,), sd["norm.weight"], sd["norm.bias"], eps=1e-5).reshape(b, n * w)
    for lin, bn in (("feature.0", "feature.1"), ("feature.2", "feature.3")):
        h = F.linear(h, sd[lin + ".weight"])
        h = F.batch_norm(h, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"],
                         sd[bn + ".bias"], training=False, eps=2e-5)
    return h


@pytest.fixture(scope="module")
def official_b32(tmp_path_factory):
    """A random ViT-B/32 in the released format, saved as FP16-ViT-B-32.pt (about 230 MB)."""
    d = tmp_path_factory.mktemp("official")
    state = random_official_state("ViT-B/32")
    path = d / "FP16-ViT-B-32.pt"
    torch.save(state, path)
    return path, state


@pytest.fixture()
def images():
    torch.manual_seed(0)
    return torch.randn(2, 3, 224, 224)


def test_official_file_loads_by_path_and_reproduces_the_official_network(official_b32, images):
    path, state = official_b32
    model, transform = unicom.load(str(path), device="cpu")
    assert isinstance(model, UnicomViT) and model.config == OFFICIAL_CONFIGS["ViT-B/32"]
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert transform.transforms[1].size == (224, 224)
    assert tuple(transform.transforms[-1].mean) == CLIP_MEAN and tuple(transform.transforms[-1].std) == CLIP_STD
    with torch.no_grad():
        got = model(images)
        want = reference_forward(state, images, OFFICIAL_CONFIGS["ViT-B/32"])
    assert got.shape == (2, 512)
    assert torch.equal(got, want), (got - want).abs().max()


def test_official_file_loads_by_name_from_the_cache(official_b32, images, tmp_path, monkeypatch):
    path, state = official_b32
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(path, cache / "FP16-ViT-B-32.pt")
    monkeypatch.setenv("UNICOM_CACHE", str(cache))
    monkeypatch.setenv("UNICOM_MIRROR", "http://127.0.0.1:9/never-used")  # a download would fail loudly
    spec = registry.MODELS["ViT-B/32"]
    monkeypatch.setitem(registry.MODELS, "ViT-B/32", dataclasses.replace(spec, sha256=sha256_file(path)))
    by_name, _ = unicom.load("ViT-B/32", device="cpu")
    by_path, _ = unicom.load(path, device="cpu")
    with torch.no_grad():
        assert torch.equal(by_name(images), by_path(images))
        assert torch.equal(by_name(images), reference_forward(state, images, by_name.config))


def test_available_models_lists_the_released_names():
    assert unicom.available_models() == ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    for name in unicom.available_models():
        spec = registry.MODELS[name]
        assert spec.url.startswith("https://github.com/deepglint/unicom/releases/download/")
        assert spec.url.endswith("/" + spec.filename) and len(spec.sha256) == 64
        assert name in OFFICIAL_CONFIGS


def _tiny_official(tmp_path, prefix: str = "", seed: int = 0):
    state = random_official_state(TINY, seed)
    path = tmp_path / "tiny.pt"
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return path, state


@pytest.mark.parametrize("prefix", ["module.", "model.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped_and_fp16_becomes_fp32(tmp_path, prefix):
    path, state = _tiny_official(tmp_path, prefix)
    model, _ = unicom.load(path, device="cpu")
    x = torch.randn(3, 3, 32, 32)
    assert model.pos_embed.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(model(x), reference_forward(state, x, model.config))


def test_nested_state_dict_with_plain_metadata_loads(tmp_path):
    state = random_official_state(TINY)
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}, tmp_path / "ckpt.pth")
    model, _ = unicom.load(tmp_path / "ckpt.pth", device="cpu")
    assert model.config == build_vit(TINY).config


def test_export_then_load_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    model = build_vit(TINY)
    _randomise_bn(model)
    model.eval()
    save_export(model, tmp_path / "export", 32, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4), 32)
    loaded, transform = unicom.load(tmp_path / "export", device="cpu")
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert tuple(transform.transforms[-1].mean) == (0.5, 0.4, 0.3)
    assert not loaded.training


def _randomise_bn(model):
    for bn in (model.feature[1], model.feature[3]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)


def _write_step(run, step: int, model, image_size=32):
    """A training checkpoint as unicom-train writes it (docs/formats.md, "Training run")."""
    from safetensors.torch import save_file

    d = run / "checkpoints" / f"step_{step}"
    d.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "backbone.safetensors"))
    (d / "encoder.json").write_text(json.dumps({
        "format": "unicom-export", "version": 1, "arch": {"type": "unicom_vit", "config": model.config.to_dict()},
        "embed_dim": model.config.embed_dim, "image_size": image_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
        "extra": {"step": step}}))
    return d


def test_training_checkpoint_step_checkpoints_and_run_dirs_load(tmp_path):
    torch.manual_seed(0)
    old, new = build_vit(TINY).eval(), build_vit(TINY).eval()
    run = tmp_path / "run"
    _write_step(run, 10, old)
    step20 = _write_step(run, 20, new)
    (run / "checkpoints" / "latest").write_text("step_20\n")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want_new, want_old = new(x), old(x)
        for where in (step20, run / "checkpoints", run, step20 / "backbone.safetensors"):
            model, _ = unicom.load(where, device="cpu")
            assert torch.equal(model(x), want_new), where
        model, _ = unicom.load(run / "checkpoints" / "step_10", device="cpu")
        assert torch.equal(model(x), want_old)
    # Without `latest`, the highest complete step is used, with a warning.
    (run / "checkpoints" / "latest").unlink()
    with pytest.warns(UserWarning, match="latest"):
        model, _ = unicom.load(run, device="cpu")
    with torch.no_grad():
        assert torch.equal(model(x), want_new)


def test_latest_naming_an_incomplete_step_is_an_error(tmp_path):
    run = tmp_path / "run"
    _write_step(run, 10, build_vit(TINY))
    (run / "checkpoints" / "step_20").mkdir()
    (run / "checkpoints" / "latest").write_text("step_20")
    with pytest.raises(FileNotFoundError, match="step_20"):
        unicom.load(run, device="cpu")


def test_loaded_model_is_in_eval_mode_with_running_stats_and_no_drop_path(tmp_path):
    torch.manual_seed(0)
    model = build_vit(TINY, drop_path_rate=0.5)
    _randomise_bn(model)
    save_export(model, tmp_path / "export", 32, CLIP_MEAN, CLIP_STD, 32)
    loaded, _ = unicom.load(tmp_path / "export", device="cpu")
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert all(b.drop_path.p == 0.0 or not b.drop_path.training for b in loaded.blocks)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = loaded(x)
        assert torch.equal(out, loaded(x))
        assert torch.allclose(loaded(x[1:2]), out[1:2], atol=1e-5), "batch statistics leaked into eval"
    bn = loaded.feature[3]
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_image_size_override_resizes_and_sets_the_transform(tmp_path):
    path, _ = _tiny_official(tmp_path)
    model, transform = unicom.load(path, device="cpu", image_size=48)
    assert model.config.image_size == 48 and model.pos_embed.shape == (1, 36, 64)
    assert model.feature[0].weight.shape == (64, 36 * 64)
    assert transform.transforms[1].size == (48, 48)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 48)).shape == (2, 32)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        unicom.load(path, device="cpu", image_size=50)


def test_heads_of_an_unknown_configuration(tmp_path):
    cfg = ViTConfig(image_size=32, patch_size=8, width=48, depth=1, heads=4, embed_dim=24)
    state = random_official_state(cfg)
    torch.save(state, tmp_path / "custom.pt")
    with pytest.warns(UserWarning, match="heads"):
        unicom.load(tmp_path / "custom.pt", device="cpu")
    model, _ = unicom.load(tmp_path / "custom.pt", device="cpu", heads=4)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference_forward(state, x, cfg))


# ----------------------------------------------------------------------------- bad input

def test_unknown_name_lists_the_available_names():
    with pytest.raises(ValueError) as info:
        unicom.load("ViT-B/33")
    for name in unicom.available_models():
        assert name in str(info.value)
    assert "ViT-B/32" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        unicom.load(str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        unicom.load(tmp_path / "no_dir" / "export")


def test_directory_without_an_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no encoder"):
        unicom.load(tmp_path)


def test_mismatched_keys_name_the_first_keys_and_shapes(tmp_path):
    state = random_official_state(TINY)
    state["feature.2.weight"] = torch.zeros(16, 64).half()  # wrong shape; feature.3 still says 32
    torch.save(state, tmp_path / "bad_shape.pt")
    with pytest.raises(StateDictMismatchError) as info:
        unicom.load(tmp_path / "bad_shape.pt", device="cpu")
    msg = str(info.value)
    assert "feature.2.weight" in msg and "[16, 64]" in msg and "[32, 64]" in msg

    state = random_official_state(TINY)
    state["blocks.0.attn.qkv.bias"] = torch.zeros(192).half()
    del state["blocks.1.mlp.fc2.bias"]
    torch.save(state, tmp_path / "bad_keys.pt")
    with pytest.raises(StateDictMismatchError) as info:
        unicom.load(tmp_path / "bad_keys.pt", device="cpu")
    msg = str(info.value)
    assert "blocks.0.attn.qkv.bias" in msg and "[192]" in msg
    assert "blocks.1.mlp.fc2.bias" in msg and "[64]" in msg


def test_export_with_wrong_weights_names_the_mismatch(tmp_path):
    model = build_vit(TINY)
    save_export(model, tmp_path / "export", 32, CLIP_MEAN, CLIP_STD, 32)
    cfg = json.loads((tmp_path / "export" / "config.json").read_text())
    cfg["arch"]["config"]["embed_dim"] = 48
    (tmp_path / "export" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StateDictMismatchError, match=r"feature\.2\.weight: checkpoint \[32, 64\] vs model \[48, 64\]"):
        unicom.load(tmp_path / "export", device="cpu")


class Payload:
    """Any class instance: unpickling it could run code, so it must be refused."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_file_with_pickled_objects_is_refused(tmp_path):
    state = random_official_state(TINY)
    state["evil"] = Payload()
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="refusing") as info:
        unicom.load(tmp_path / "evil.pt", device="cpu")
    msg = str(info.value)  # what was refused and how to convert it; never "unpickle it anyway"
    assert "a pickled posix.getcwd object" in msg or "a pickled os.getcwd object" in msg
    assert "torch.save(model.state_dict()" in msg and "weights_only=False" not in msg and "\n" not in msg


@pytest.mark.parametrize("kind", ["weights", "export"])
def test_non_finite_weights_are_refused_naming_the_file(tmp_path, kind):
    """A diverged run's weights used to load without a word and embed everything as NaN."""
    state = random_official_state(TINY)
    key = "blocks.0.attn.qkv.weight"
    state[key][0, 0] = float("nan")
    if kind == "weights":
        path = tmp_path / "nan.pt"
        torch.save(state, path)
        target, named = path, path
    else:
        # save_export itself refuses non-finite weights, so the NaN export is made by hand: a
        # finite export, then its weights file replaced (as a run killed mid-divergence could).
        from safetensors.torch import save_file

        model = build_vit(TINY)
        target = save_export(model.eval(), tmp_path / "export", 32, CLIP_MEAN, CLIP_STD, model.config.embed_dim)
        named = target / "model.safetensors"
        save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(named))
    with pytest.raises(ValueError, match=f"{named} holds NaN/Inf weights in 1 tensor.*{key} \\(1 values\\)"):
        unicom.load(target, device="cpu")


def test_exported_weights_get_the_mode_of_every_other_output(tmp_path):
    d = save_export(build_vit(TINY).eval(), tmp_path / "export", 32, CLIP_MEAN, CLIP_STD, 32)
    modes = {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"], modes  # safetensors alone makes 0o600


def test_file_with_non_tensor_values_is_refused(tmp_path):
    state = random_official_state(TINY)
    state["notes"] = ["a", "list"]
    torch.save(state, tmp_path / "list.pt")
    with pytest.raises(UnsafeCheckpointError, match="notes"):
        unicom.load(tmp_path / "list.pt", device="cpu")
    torch.save([1, 2, 3], tmp_path / "not_a_dict.pt")
    with pytest.raises(UnsafeCheckpointError):
        unicom.load(tmp_path / "not_a_dict.pt", device="cpu")


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        unicom.load(tmp_path / "junk.pt", device="cpu")


def test_not_a_vit_state_dict(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not look like a Unicom ViT"):
        unicom.load(tmp_path / "other.pt", device="cpu")


def test_no_warning_for_a_known_configuration(tmp_path):
    path, _ = _tiny_official(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unicom.load(path, device="cpu")
