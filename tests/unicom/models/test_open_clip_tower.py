"""open_clip visual tower + embedding head: shapes, export round trip, training through the trainer."""
import pytest
import torch

from tests.unicom.train.support import tiny_config
from unicom.formats.export import load_export_state, read_export_config, save_export
from unicom.models.arch import build_from_arch
from unicom.models.open_clip_tower import OpenCLIPTower, build_open_clip_tower


def test_tower_embeds_and_exports_round_trip(tmp_path):
    tower = build_open_clip_tower("TinyCLIP-demo", embed_dim=48, pretrained="none")
    assert isinstance(tower, OpenCLIPTower) and tower.embed_dim == 48 and tower.image_size == 64
    x = torch.randn(4, 3, 64, 64)
    y = tower(x)
    assert y.shape == (4, 48) and y.dtype == torch.float32
    assert set(k.split(".")[0] for k in tower.state_dict()) == {"visual", "head"}
    assert tower.export_arch() == {"model_name": "TinyCLIP-demo", "embed_dim": 48, "head": "linear_bn"}

    with torch.no_grad():  # make the BN statistics non-trivial, then compare in eval mode
        tower.head[1].running_mean.normal_()
    save_export(tower, tmp_path, tower.image_size, tower.mean, tower.std, tower.embed_dim)
    cfg = read_export_config(tmp_path)
    assert cfg["arch"]["type"] == "open_clip_tower"
    again = build_from_arch(cfg["arch"])
    again.load_state_dict(load_export_state(tmp_path))
    tower.eval()
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(tower(x), again(x))


def test_bn_head_keeps_clip_projection_and_checks_dims():
    tower = build_open_clip_tower("TinyCLIP-demo", pretrained="none", head="bn")
    assert tower.embed_dim == 64 and tower(torch.randn(2, 3, 64, 64)).shape == (2, 64)
    with pytest.raises(ValueError, match="linear_bn"):
        build_open_clip_tower("TinyCLIP-demo", embed_dim=32, pretrained="none", head="bn")
    with pytest.raises(ValueError, match="head"):
        build_open_clip_tower("TinyCLIP-demo", pretrained="none", head="mlp")


def test_tower_loads_a_local_weights_file_and_supports_grad_checkpointing(tmp_path):
    from unicom.models.clip_loader import create_clip

    model, _, _ = create_clip("TinyCLIP-demo", "none")
    with torch.no_grad():
        model.visual.proj.mul_(3.0)  # weights that differ from the random init
    path = tmp_path / "clip.pt"
    torch.save(model.state_dict(), path)
    tower = build_open_clip_tower("TinyCLIP-demo", pretrained=str(path), grad_checkpointing=True)
    assert torch.equal(tower.visual.proj, model.visual.proj)
    assert tower.visual.transformer.grad_checkpointing
    tower(torch.randn(2, 3, 64, 64)).sum().backward()
    assert tower.visual.conv1.weight.grad is not None


def test_backbone_config_builds_an_open_clip_tower():
    from unicom.train.model import build_backbone

    cfg = tiny_config("model.type=open_clip", "model.name=TinyCLIP-demo", "model.pretrained=none",
                      "model.embed_dim=32")
    model = build_backbone(cfg)
    assert isinstance(model, OpenCLIPTower) and model.embed_dim == 32
    with pytest.raises(ValueError, match="pretrained"):
        build_backbone(tiny_config("model.type=open_clip", "model.name=TinyCLIP-demo"))


def test_trainer_fine_tunes_an_open_clip_tower(toy_labels, tmp_path):
    from unicom.train.loop import train

    shards, labels = toy_labels
    cfg = tiny_config("model.type=open_clip", "model.name=TinyCLIP-demo", "model.pretrained=none",
                      "model.embed_dim=32", "train.max_steps=2", "data.batch_size=8")
    summary = train(cfg, str(shards), str(labels), str(tmp_path / "run"))
    assert summary["finished"]
    exp = read_export_config(tmp_path / "run" / "export")
    assert exp["arch"] == {"type": "open_clip_tower", "model_name": "TinyCLIP-demo", "embed_dim": 32,
                           "head": "linear_bn"}
    assert exp["image_size"] == 64

