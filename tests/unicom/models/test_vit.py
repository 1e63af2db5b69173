"""The Unicom ViT: the official key set and shapes, eval-mode behaviour, resolution change."""
from __future__ import annotations

import pytest
import torch

from unicom.models.vit import OFFICIAL_CONFIGS, UnicomViT, ViTConfig, build_vit
from unicom.pretrained.resize import resize_vit_state

# docs/formats.md, "Released Unicom checkpoints": (image, patch, width, depth, heads, embed).
RELEASED_TABLE = {
    "ViT-B/32": (224, 32, 768, 12, 12, 512),
    "ViT-B/16": (224, 16, 768, 12, 12, 768),
    "ViT-L/14": (224, 14, 1024, 24, 16, 768),
    "ViT-L/14@336px": (336, 14, 1024, 24, 16, 768),
}


def design_keys(image, patch, width, depth, embed):
    """The official state-dict keys and shapes, written out from docs/formats.md."""
    n = (image // patch) ** 2
    keys = {"patch_embed.proj.weight": (width, 3, patch, patch), "patch_embed.proj.bias": (width,),
            "pos_embed": (1, n, width)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                     b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                     b + "attn.qkv.weight": (3 * width, width),
                     b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                     b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
                     b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,)})
    keys.update({"norm.weight": (width,), "norm.bias": (width,), "feature.0.weight": (width, width * n)})
    for j, dim in ((1, width), (3, embed)):
        keys.update({f"feature.{j}.weight": (dim,), f"feature.{j}.bias": (dim,), f"feature.{j}.running_mean": (dim,),
                     f"feature.{j}.running_var": (dim,), f"feature.{j}.num_batches_tracked": ()})
    keys["feature.2.weight"] = (embed, width)
    return keys


@pytest.mark.parametrize("name", list(RELEASED_TABLE))
def test_official_configs_have_the_design_keys_and_shapes(name):
    image, patch, width, depth, heads, embed = RELEASED_TABLE[name]
    cfg = OFFICIAL_CONFIGS[name]
    assert (cfg.image_size, cfg.patch_size, cfg.width, cfg.depth, cfg.heads, cfg.embed_dim) == RELEASED_TABLE[name]
    with torch.device("meta"):  # shapes only: no L/14 weights are ever materialised
        model = build_vit(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == design_keys(image, patch, width, depth, embed)
    assert model.blocks[0].attn.heads == heads
    bn1, bn2 = model.feature[1], model.feature[3]
    assert bn1.eps == bn2.eps == 2e-5
    assert model.blocks[0].norm1.eps == model.norm.eps == 1e-5
    assert isinstance(model.blocks[0].mlp.act, torch.nn.ReLU6)


def _randomise_bn(model: UnicomViT, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for bn in (model.feature[1], model.feature[3]):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        bn.weight.data.copy_(torch.randn(n, generator=g))
        bn.bias.data.copy_(torch.randn(n, generator=g))


def test_eval_mode_uses_running_statistics_and_no_drop_path():
    torch.manual_seed(0)
    model = build_vit("ViT-Tiny/8@32", drop_path_rate=0.5)
    _randomise_bn(model)
    plain = build_vit("ViT-Tiny/8@32", drop_path_rate=0.0)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x)), "eval must be deterministic"
        assert torch.equal(out, plain(x)), "drop-path must be the identity in eval mode"
        # Running statistics: a sample's embedding does not depend on the rest of its batch,
        # and equals the BatchNorm formula with the stored mean and variance.
        assert torch.allclose(model(x[:1]), out[:1], atol=1e-5)
        f = model.feature
        h = f[0](model.forward_tokens(x).flatten(1))
        h = (h - f[1].running_mean) / torch.sqrt(f[1].running_var + f[1].eps) * f[1].weight + f[1].bias
        h = f[2](h)
        h = (h - f[3].running_mean) / torch.sqrt(f[3].running_var + f[3].eps) * f[3].weight + f[3].bias
        assert torch.allclose(h, out, atol=1e-4)
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x)), "drop-path (and batch stats) act in train mode"


# ----------------------------------------------------------------------------- resolution change
# A model whose outputs are known at any input size: with a position-independent pos_embed and
# an image of one colour, every patch token is the same vector t at every resolution, so the
# head's first Linear computes sum_p W_p t. If W_p is a constant or linear function of the patch
# position, the resized head (reshaped to (out, gh, gw, width), interpolated over the grid and
# scaled by the patch-count ratio) must give the same sum, hence the same embedding.

def _checkable_model(position_profile: str, image_size: int = 32) -> UnicomViT:
    torch.manual_seed(1)
    model = UnicomViT(ViTConfig(image_size=image_size, patch_size=8, width=32, depth=2, heads=2, embed_dim=16))
    _randomise_bn(model, 1)
    cfg = model.config
    with torch.no_grad():
        model.pos_embed.copy_(torch.randn(1, 1, cfg.width).expand(1, cfg.num_patches, cfg.width))
        a = torch.randn(cfg.width, 1, 1, cfg.width) * 0.05  # (out, ., ., width)
        g = cfg.grid
        ii, jj = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32),
                                indexing="ij")
        c = (g - 1) / 2
        prof = torch.ones(g, g) if position_profile == "constant" else 1 + 0.3 * (ii - c) - 0.2 * (jj - c)
        model.feature[0].weight.copy_((a * prof[None, :, :, None]).reshape(cfg.width, -1))
    return model.eval()


def _plain_image(size: int) -> torch.Tensor:
    colour = torch.tensor([0.3, -0.7, 1.1]).view(1, 3, 1, 1)
    return colour.expand(2, 3, size, size).clone()


@pytest.mark.parametrize("profile", ["constant", "linear"])
@pytest.mark.parametrize("new_size", [64, 48, 16])
def test_resolution_change_preserves_a_checkable_models_output(profile, new_size):
    model = _checkable_model(profile)
    new_cfg = ViTConfig(**{**model.config.to_dict(), "image_size": new_size})
    resized = UnicomViT(new_cfg)
    resized.load_state_dict(resize_vit_state(model.state_dict(), model.config, new_cfg))
    resized.eval()
    with torch.no_grad():
        want = model(_plain_image(32))
        got = resized(_plain_image(new_size))
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()


def test_resolution_change_fails_without_the_patch_count_scaling():
    model = _checkable_model("constant")
    new_cfg = ViTConfig(**{**model.config.to_dict(), "image_size": 64})
    resized = UnicomViT(new_cfg)
    resized.load_state_dict(resize_vit_state(model.state_dict(), model.config, new_cfg, preserve_sum=False))
    resized.eval()
    with torch.no_grad():
        assert not torch.allclose(resized(_plain_image(64)), model(_plain_image(32)), rtol=1e-2, atol=1e-2)


def test_resolution_change_keeps_the_patch_grid_layout():
    """A head weight that is a different function of position for each channel: resizing by
    an integer factor with nearest-neighbour must copy each (row, col) weight into its block."""
    from unicom.pretrained.resize import resize_head_weight

    out_dim, g, width = 3, 2, 4
    w = torch.arange(out_dim * g * g * width, dtype=torch.float32).reshape(out_dim, g * g * width)
    r = resize_head_weight(w, width, 4, mode="nearest", preserve_sum=False).reshape(out_dim, 4, 4, width)
    w4 = w.reshape(out_dim, g, g, width)
    for i in range(4):
        for j in range(4):
            assert torch.equal(r[:, i, j], w4[:, i // 2, j // 2])
