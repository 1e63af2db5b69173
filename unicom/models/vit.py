"""The Unicom Vision Transformer, in the exact layout of the officially released checkpoints.

Layout (docs/formats.md, "Released Unicom checkpoints"): a Conv2d patch embedding with bias, a
learned position embedding [1, num_patches, width] and no class token; pre-norm blocks whose
attention has a bias-free ``qkv`` and a biased ``proj``, and whose MLP is fc1 → ReLU6 → fc2;
a final LayerNorm; then the ``feature`` head applied to *all* patch tokens flattened:
Linear(width·num_patches → width) → BN → Linear(width → embed) → BN. The output is not
normalised. Parameter names match the official state dict key for key.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a Unicom ViT. ``image_size`` is the square input side in pixels."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    depth: int = 12
    heads: int = 12
    embed_dim: int = 512
    mlp_ratio: float = 4.0
    in_channels: int = 3

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def to_dict(self) -> dict:
        return asdict(self)


# The four released encoders: (image, patch, width, depth, heads, embed).
OFFICIAL_CONFIGS = {
    "ViT-B/32": ViTConfig(224, 32, 768, 12, 12, 512),
    "ViT-B/16": ViTConfig(224, 16, 768, 12, 12, 768),
    "ViT-L/14": ViTConfig(224, 14, 1024, 24, 16, 768),
    "ViT-L/14@336px": ViTConfig(336, 14, 1024, 24, 16, 768),
}

# Small variants for CPU runs, tests and the demo (not released; same layout).
SMALL_CONFIGS = {
    "ViT-Tiny/16@64": ViTConfig(64, 16, 96, 3, 3, 64),
    "ViT-Tiny/8@32": ViTConfig(32, 8, 64, 2, 2, 32),
    "ViT-S/16@112": ViTConfig(112, 16, 256, 6, 4, 256),
}


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``
    during training, scaling survivors by 1/(1-p). Identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class PatchEmbedding(nn.Module):
    """Conv2d patchifier: [B, C, H, W] → [B, num_patches, width]."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, width: int):
        super().__init__()
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a bias-free fused qkv and a biased output projection."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, width * 3, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        # Token-major memory ([n, b, d] viewed as [b, n, d]), as in the released model: the
        # projection's GEMM then rounds exactly as the official network does.
        out = out.permute(2, 0, 1, 3).contiguous().view(n, b, d).permute(1, 0, 2)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 → ReLU6 → fc2."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with optional stochastic depth."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class UnicomViT(nn.Module):
    """Unicom image encoder: images [B, 3, S, S] (normalised) → embeddings [B, embed_dim].

    ``drop_path_rate`` rises linearly over the blocks (0 at the first). ``grad_checkpointing``
    recomputes block activations in the backward pass to save memory while training.
    """

    def __init__(self, config: ViTConfig, drop_path_rate: float = 0.0, grad_checkpointing: bool = False):
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}")
        self.config = config
        self.grad_checkpointing = grad_checkpointing
        w, n = config.width, config.num_patches
        self.patch_embed = PatchEmbedding(config.image_size, config.patch_size, config.in_channels, w)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, w))
        rates = (torch.linspace(0, drop_path_rate, config.depth, device="cpu").tolist() if config.depth > 1
                 else [drop_path_rate])
        self.blocks = nn.ModuleList(Block(w, config.heads, config.mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(w)
        self.feature = nn.Sequential(
            nn.Linear(w * n, w, bias=False),
            nn.BatchNorm1d(w, eps=2e-5),
            nn.Linear(w, config.embed_dim, bias=False),
            nn.BatchNorm1d(config.embed_dim, eps=2e-5),
        )
        self.reset_parameters()

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def arch_record(self) -> dict:
        """The ``arch`` record of an export's config.json (``unicom.models.arch.build_from_arch``)."""
        return {"type": "unicom_vit", "config": self.config.to_dict()}

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) for linears and the position embedding, zero biases."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, S, S] → normalised patch tokens [B, num_patches, width] (fp32)."""
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, S, S] → unnormalised embeddings [B, embed_dim]."""
        tokens = self.forward_tokens(x)
        return self.feature(tokens.flatten(1))


def build_vit(name_or_config, drop_path_rate: float = 0.0, grad_checkpointing: bool = False, **overrides) -> UnicomViT:
    """Build a Unicom ViT from an official name (``ViT-B/32`` …), a small variant name, a
    ``ViTConfig`` or a dict of its fields. ``overrides`` replace config fields
    (e.g. ``embed_dim=256``)."""
    cfg = resolve_vit_config(name_or_config)
    if overrides:
        cfg = ViTConfig(**{**cfg.to_dict(), **overrides})
    return UnicomViT(cfg, drop_path_rate=drop_path_rate, grad_checkpointing=grad_checkpointing)


def resolve_vit_config(name_or_config) -> ViTConfig:
    """Return the ``ViTConfig`` for a name, a dict or a config; unknown names list the known ones."""
    if isinstance(name_or_config, ViTConfig):
        return name_or_config
    if isinstance(name_or_config, dict):
        return ViTConfig(**name_or_config)
    table = {**OFFICIAL_CONFIGS, **SMALL_CONFIGS}
    if name_or_config not in table:
        raise ValueError(f"unknown ViT architecture {name_or_config!r}; known: {', '.join(table)}")
    return table[name_or_config]


def vit_names() -> Tuple[str, ...]:
    """Names accepted by ``build_vit``."""
    return tuple(OFFICIAL_CONFIGS) + tuple(SMALL_CONFIGS)
