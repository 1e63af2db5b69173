"""Resizing the position embedding and the head's first Linear to another patch grid."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unicom.models.vit import ViTConfig
from unicom.pretrained.resize import resize_head_weight, resize_pos_embed, resize_vit_state


def _ramp(g: int, c: int) -> torch.Tensor:
    """pos_embed whose channel k at (i, j) is a_k·i + b_k·j: a linear field over the grid."""
    a, b = torch.linspace(-1, 1, c), torch.linspace(2, 0.5, c)
    i, j = torch.meshgrid(torch.arange(g, dtype=torch.float64), torch.arange(g, dtype=torch.float64), indexing="ij")
    return (i[..., None] * a + j[..., None] * b).reshape(1, g * g, c).float(), a, b


def test_pos_embed_is_resized_as_a_row_major_grid_of_vectors():
    """Position p = i·g + j holds the vector of cell (row i, column j): resizing pos_embed must
    equal resizing the [C, g, g] image that these vectors form."""
    torch.manual_seed(0)
    img = torch.randn(1, 6, 4, 4)
    pos = img.permute(0, 2, 3, 1).reshape(1, 16, 6)
    for size in (8, 6, 3):
        kw = {"antialias": True} if size < 4 else {}
        want = F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, **kw)
        assert torch.allclose(resize_pos_embed(pos, size), want.permute(0, 2, 3, 1).reshape(1, size * size, 6))


def test_pos_embed_resize_reproduces_a_linear_field_inside_the_grid():
    pos, a, b = _ramp(4, 6)
    out = resize_pos_embed(pos, 8, mode="bilinear").reshape(8, 8, 6)
    # New cell centres map to old coordinates (x + 0.5)·(4/8) − 0.5 (align_corners=False);
    # inside the grid, bilinear interpolation is exact on linear functions.
    for ni in range(1, 7):
        for nj in range(1, 7):
            oi, oj = (ni + 0.5) * 0.5 - 0.5, (nj + 0.5) * 0.5 - 0.5
            assert torch.allclose(out[ni, nj], oi * a + oj * b, atol=1e-5)
    const = torch.full((1, 16, 3), 0.7)
    assert torch.allclose(resize_pos_embed(const, 7), torch.full((1, 49, 3), 0.7), atol=1e-6)


def test_same_grid_is_a_copy_and_shapes_follow_the_grid():
    pos = torch.randn(1, 16, 8)
    assert torch.equal(resize_pos_embed(pos, 4), pos)
    assert resize_pos_embed(pos, (3, 5)).shape == (1, 15, 8)
    w = torch.randn(5, 16 * 8)
    assert torch.equal(resize_head_weight(w, 8, 4), w)
    assert resize_head_weight(w, 8, 6).shape == (5, 36 * 8)
    assert resize_head_weight(w, 8, 2).shape == (5, 4 * 8)


def test_head_resize_is_per_position_and_chunking_does_not_matter():
    torch.manual_seed(0)
    out_dim, g, width = 7, 4, 5
    w = torch.randn(out_dim, g * g * width)
    full = resize_head_weight(w, width, 6, chunk=64)
    assert torch.equal(full, resize_head_weight(w, width, 6, chunk=2))
    # Each output row and each channel resizes independently, exactly like pos_embed does.
    maps = w.reshape(out_dim, g * g, width)
    for o in range(out_dim):
        want = resize_pos_embed(maps[o:o + 1], 6) * (16 / 36)
        assert torch.allclose(full[o].reshape(1, 36, width), want, atol=1e-6)


def test_preserve_sum_scales_by_the_patch_count_ratio():
    w = torch.ones(2, 16 * 3)
    assert torch.allclose(resize_head_weight(w, 3, 8), torch.full((2, 64 * 3), 0.25))
    assert torch.allclose(resize_head_weight(w, 3, 8, preserve_sum=False), torch.ones(2, 64 * 3))


def test_resize_vit_state_changes_only_what_depends_on_the_grid():
    old = ViTConfig(image_size=32, patch_size=8, width=16, depth=1, heads=2, embed_dim=8)
    new = ViTConfig(image_size=64, patch_size=8, width=16, depth=1, heads=2, embed_dim=8)
    state = {"pos_embed": torch.randn(1, 16, 16), "feature.0.weight": torch.randn(16, 256),
             "norm.weight": torch.ones(16)}
    out = resize_vit_state(state, old, new)
    assert out["pos_embed"].shape == (1, 64, 16) and out["feature.0.weight"].shape == (16, 1024)
    assert out["norm.weight"] is state["norm.weight"]
    with pytest.raises(ValueError, match="only the image size"):
        resize_vit_state(state, old, ViTConfig(**{**new.to_dict(), "width": 32}))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.randn(1, 15, 4), 4)
    with pytest.raises(ValueError, match="num_patches"):
        resize_head_weight(torch.randn(2, 10), 3, 4)
