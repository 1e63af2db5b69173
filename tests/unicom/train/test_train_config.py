"""Config files, overrides, presets and the LR schedule."""
from pathlib import Path

import pytest
import torch
import yaml

from unicom.train.config import Config, feature_sample_dim, load_config, parse_override
from unicom.train.schedule import LRSchedule

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
PRESETS = ["demo.yaml", "vit_b32_laion400m.yaml", "vit_b16_laion400m.yaml", "vit_l14_laion400m.yaml",
           "vit_l14_336_laion400m.yaml"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_build_their_model(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.model.type == "unicom_vit"
    from unicom.models.vit import resolve_vit_config

    vit = resolve_vit_config(cfg.model.name)
    assert vit.image_size % vit.patch_size == 0
    if name != "demo.yaml":  # the paper's pre-training settings
        assert cfg.optim.name == "adamw" and cfg.optim.lr == pytest.approx(1e-3)
        assert cfg.optim.weight_decay == pytest.approx(0.05)
        assert cfg.head.margin == "arcface" and cfg.head.m2 == pytest.approx(0.3) and cfg.head.scale == 64
        assert cfg.head.sample_rate == pytest.approx(0.1) and cfg.data.epochs == 32
        assert cfg.model.grad_checkpointing and cfg.train.precision in ("fp16", "bf16")


def test_demo_preset_exercises_dual_partial_selection():
    cfg = load_config(CONFIGS / "demo.yaml")
    assert cfg.head.sample_rate < 1.0
    assert feature_sample_dim(cfg.head, 128) is not None


def test_overrides_parse_yaml_values_and_reject_unknown_keys():
    cfg = load_config(None, ["optim.lr=1e-4", "data.crop_scale=[0.5, 1.0]", "head.feature_sample_rate=null",
                             "train.tensorboard=true", "model.name={image_size: 32, patch_size: 8}"])
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.crop_scale == [0.5, 1.0] and cfg.head.feature_sample_rate is None
    assert cfg.train.tensorboard is True and cfg.model.name == {"image_size": 32, "patch_size": 8}
    with pytest.raises(ValueError, match="keys of 'optim'"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="unknown config section"):
        load_config(None, ["optimizer.lr=1"])
    with pytest.raises(ValueError, match="section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(ValueError, match="sample_rate"):
        load_config(None, ["head.sample_rate=1.5"])


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", ["optim.lr=3e-4"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert set(yaml.safe_load(path.read_text())) == set(Config().to_dict())


def test_feature_sample_dim_from_rate_or_count():
    cfg = load_config(None, ["head.feature_sample_rate=0.5"])
    assert feature_sample_dim(cfg.head, 128) == 64
    cfg = load_config(None, ["head.feature_sample_dim=100"])
    assert feature_sample_dim(cfg.head, 128) == 100
    assert feature_sample_dim(load_config(None).head, 128) is None
    with pytest.raises(ValueError, match="exceeds"):
        feature_sample_dim(load_config(None, ["head.feature_sample_dim=200"]).head, 128)


def test_cosine_schedule_warms_up_then_decays_to_floor():
    s = LRSchedule("cosine", total_samples=1000, warmup_samples=100, min_lr_ratio=0.1)
    assert s.factor(0) == 0 and s.factor(50) == pytest.approx(0.5) and s.factor(100) == pytest.approx(1.0)
    assert s.factor(550) == pytest.approx(0.55)
    assert s.factor(1000) == pytest.approx(0.1)
    values = [s.factor(t) for t in range(100, 1001, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_onecycle_matches_torch_shape():
    total, steps = 1000, 100
    s = LRSchedule("onecycle", total_samples=total, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=steps + 1, pct_start=0.3,
                                              anneal_strategy="cos", div_factor=25, final_div_factor=1e4)
    torch_lrs = []
    for _ in range(steps + 1):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    ours = [s.factor(t * total / steps) for t in range(steps + 1)]
    assert ours[0] == pytest.approx(1 / 25) and max(ours) == pytest.approx(1.0)
    assert ours[-1] == pytest.approx(1 / 25 / 1e4)
    assert max(abs(a - b) for a, b in zip(ours, torch_lrs)) < 0.05
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    for g in opt2.param_groups:
        g["initial_lr"] = g["lr"]
    assert s.apply([opt2], 300) == pytest.approx(1.0) and opt2.param_groups[0]["lr"] == pytest.approx(0.5)
