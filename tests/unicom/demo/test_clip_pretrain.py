"""`make clip`: the tiny CLIP's contrastive pretraining is deterministic, cached, loadable, and learns."""
import json

import torch

from unicom.demo.clip_pretrain import main
from unicom.models.clip_loader import create_clip
from unicom.sample_data import generate_sample_set


def test_clip_pretraining_is_deterministic_cached_and_loadable(tmp_path, capsys):
    sample = tmp_path / "sample"
    generate_sample_set(str(sample), seed=0, per_concept=3, heldout_per_concept=1, shard_size=60, image_size=64)
    args = ["--data", str(sample / "shards"), "--epochs", "3", "--batch-size", "32", "--threads", "1"]
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert main(args + ["--output", str(a)]) == 0
    assert main(args + ["--output", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()  # same seed, same thread count: the same weights

    info = json.loads(a.with_suffix(".json").read_text())
    assert info["pairs"] == 36 * 3 + 6  # the bad shard's 11 samples, 5 of them unusable
    assert info["steps"] == 3 * (info["pairs"] // 32)
    assert info["loss"][-1] < info["loss"][0]  # contrastive loss falls from ~log(32)

    capsys.readouterr()
    assert main(args + ["--output", str(a)]) == 0  # same shards and settings: nothing to do
    assert "up to date" in capsys.readouterr().out

    model, _, _ = create_clip("TinyCLIP-demo", str(a))
    random, _, _ = create_clip("TinyCLIP-demo", "none")
    from safetensors.torch import load_file

    saved = load_file(str(a))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert not torch.equal(model.visual.conv1.weight, random.visual.conv1.weight)


def test_clip_pretraining_refuses_a_non_safetensors_output(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--output", str(tmp_path / "w.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
