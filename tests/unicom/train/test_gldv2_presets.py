"""The GLDv2 fine-tuning presets: the official finetune_GLDv2.py defaults, an architecture the
released encoder's weights load into (after the resize to the script's input size), and the
preset `make finetune DATASET=gldv2 ENCODER=...` picks."""
import shutil
import subprocess
from pathlib import Path

import pytest

from unicom.models.vit import OFFICIAL_CONFIGS, ViTConfig, resolve_vit_config
from unicom.train.config import load_config

ROOT = Path(__file__).resolve().parents[3]
PRESETS = {"ViT-L/14@336px": "gldv2_vit_l14_336.yaml", "ViT-L/14": "gldv2_vit_l14.yaml",
           "ViT-B/16": "gldv2_vit_b16.yaml", "ViT-B/32": "gldv2_vit_b32.yaml"}


@pytest.mark.parametrize("encoder, name", PRESETS.items())
def test_presets_hold_the_official_defaults(encoder, name):
    cfg = load_config(ROOT / "configs" / "finetune" / name)
    h, o, d = cfg.head, cfg.optim, cfg.data
    assert (h.margin, h.m1, h.m2, h.m3, h.scale) == ("combined", 1.0, 0.5, 0.0, 32.0)
    assert (h.sample_rate, h.lr_mult) == (0.5, 3.0)
    assert h.feature_sample_dim is None and h.interclass_filter == 0.0
    assert (o.name, o.lr, o.weight_decay) == ("adamw", pytest.approx(1e-4), 0.0)
    assert (cfg.schedule.name, cfg.schedule.pct_start) == ("onecycle", pytest.approx(0.1))
    assert (d.batch_size, d.epochs, d.num_classes, cfg.train.seed, cfg.train.accum_steps) == (16, 16, 81314, 1024, 1)
    assert (d.crop_scale, d.crop_ratio, d.hflip) == ([0.1, 1.0], [0.8, 1.25], 0.5)
    assert cfg.model.init_from == encoder and cfg.model.sync_bn and cfg.model.drop_path == pytest.approx(0.1)
    vit = resolve_vit_config(cfg.model.name)
    # the script's 512-px input: the same patch grid (512 // patch), and the data at the model's size
    assert vit.grid == 512 // vit.patch_size and d.image_size == vit.image_size
    # the released encoder's weights load: everything but the input size is the released architecture
    assert ViTConfig(**{**OFFICIAL_CONFIGS[encoder].to_dict(), "image_size": vit.image_size}) == vit
    # --output_dim 768, where the released encoder allows it (ViT-B/32's head is 512-d)
    assert vit.embed_dim == (512 if encoder == "ViT-B/32" else 768)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize("encoder, name", PRESETS.items())
def test_make_finetune_picks_the_gldv2_preset(encoder, name):
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "finetune", "DATASET=gldv2", f"ENCODER={encoder}",
                          "DATA_ROOT=/nowhere/gldv2", "PY=python"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.replace("\\\n", " ").splitlines() if "unicom.train.cli" in x)
    assert f"--config configs/finetune/{name} --dataset gldv2" in line
