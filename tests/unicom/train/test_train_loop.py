"""The training loop on the CPU: learning, exact resume, checkpoints, accumulation, non-finite losses."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.unicom.train.support import tiny_config
from unicom.train.loop import NonFiniteLossError, RunExistsError, build_head, forward_backward, train
from unicom.train.run_log import read_log


def _train(cfg, toy, out, **kw):
    shards, labels = toy
    return train(cfg, str(shards), str(labels), str(out), **kw)


def test_loss_falls_on_a_learnable_toy_set_and_skips_are_counted(toy_labels, tmp_path):
    summary = _train(tiny_config("train.max_steps=30", "optim.lr=3e-3", "head.lr_mult=10",
                                 "schedule.name=constant"), toy_labels,
                     tmp_path / "run")
    rows = read_log(tmp_path / "run")
    losses = [r["loss"] for r in rows]
    assert len(rows) == 30 and summary["finished"]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    # 30 × 16 samples is more than one pass: the bad shard was read, and its bad records counted
    skipped = summary["skipped"]
    assert skipped.get("bad_image", 0) >= 2 and skipped.get("missing_image", 0) >= 1
    assert skipped.get("truncated_tar", 0) >= 1
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 30


def test_interrupted_and_resumed_run_matches_the_uninterrupted_one(toy_labels, tmp_path):
    extra = ("train.max_steps=10", "train.ckpt_every=4", "data.num_workers=2", "model.drop_path=0.1",
             "train.keep_checkpoints=2", "schedule.name=onecycle")
    full = _train(tiny_config(*extra), toy_labels, tmp_path / "full")
    assert full["finished"] and full["step"] == 10

    part = _train(tiny_config(*extra, "train.stop_after_steps=6"), toy_labels, tmp_path / "cut")
    assert not part["finished"] and part["step"] == 6
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text().strip() == "step_4"
    assert not (tmp_path / "cut" / "export").exists()
    with pytest.raises(RunExistsError):
        _train(tiny_config(*extra), toy_labels, tmp_path / "cut")
    resumed = _train(tiny_config(*extra), toy_labels, tmp_path / "cut", resume=True)
    assert resumed["finished"] and resumed["resumed_exactly"] and resumed["session_steps"] == 6

    ref, got = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in got] == list(range(1, 11))  # rows 5-6 of the killed session were dropped
    assert [r["loss"] for r in got] == [r["loss"] for r in ref]
    assert [r["lr"] for r in got] == [r["lr"] for r in ref]
    a = load_file(str(tmp_path / "full" / "export" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "export" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # checkpoint layout (docs/formats.md): pruned to the newest 2, latest last, encoder loadable like an export
    steps = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert steps == ["step_10", "step_8"]
    step_dir = tmp_path / "full" / "checkpoints" / "step_10"
    assert {p.name for p in step_dir.iterdir()} >= {"backbone.safetensors", "encoder.json", "optimizer.pt",
                                                     "state.json", "centres"}
    assert list((step_dir / "centres").glob("centres-00000-of-00001.safetensors"))
    state = json.loads((step_dir / "state.json").read_text())
    assert state["step"] == 10 and state["data"]["num_streams"] == 2 and len(state["ranks"]) == 1
    enc = json.loads((step_dir / "encoder.json").read_text())
    exp = json.loads((tmp_path / "full" / "export" / "config.json").read_text())
    assert {k: enc[k] for k in ("format", "version", "arch", "embed_dim", "image_size", "mean", "std")} == \
        {k: exp[k] for k in ("format", "version", "arch", "embed_dim", "image_size", "mean", "std")}
    from unicom.models.arch import build_from_arch

    model = build_from_arch(enc["arch"])
    model.load_state_dict(load_file(str(step_dir / "backbone.safetensors")))  # plain, unprefixed keys
    assert all(torch.equal(model.state_dict()[k].float(), a[k]) for k in a)


def _tiny_model_and_head(sample_rate=1.0):
    from unicom.train.model import build_backbone

    cfg = tiny_config(f"head.sample_rate={sample_rate}", "head.feature_sample_rate=null")
    torch.manual_seed(0)
    model = build_backbone(cfg)
    for m in model.modules():  # BatchNorm's batch statistics differ between 1×8 and 2×4 by design
        if isinstance(m, torch.nn.BatchNorm1d):
            m.eval()
    return model, build_head(cfg, 36, model.embed_dim)


def test_gradient_accumulation_matches_the_full_batch():
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 36, (8,))
    grads = []
    for micro in ([(x, y)], [(x[:4], y[:4]), (x[4:], y[4:])]):
        model, head = _tiny_model_and_head()
        losses = forward_backward(model, head, micro, torch.device("cpu"))
        grads.append(([p.grad.clone() for p in model.parameters()], head.dense_weight_grad(), losses))
    (g1, h1, l1), (g2, h2, l2) = grads
    assert len(l1) == 1 and len(l2) == 2
    assert float(l1[0]) == pytest.approx(float(sum(l2) / 2), rel=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(h1, h2, rtol=1e-4, atol=1e-7)


def test_non_finite_loss_skips_the_step_and_is_counted(toy_labels, tmp_path):
    nan_steps = {0, 1}

    def hook(step, micro, loss):
        return loss * float("nan") if step in nan_steps else loss

    cfg = tiny_config("train.max_steps=2")
    summary = _train(cfg, toy_labels, tmp_path / "run", loss_hook=hook)
    assert summary["finished"] and summary["nonfinite_steps"] == 2
    assert [r["skipped_steps"] for r in read_log(tmp_path / "run")] == [1, 2]
    # both steps were skipped: the weights are the initial ones
    from unicom.runtime.device import seed_everything
    from unicom.train.model import build_backbone

    seed_everything(cfg.train.seed)
    init = build_backbone(tiny_config()).state_dict()
    final = load_file(str(tmp_path / "run" / "export" / "model.safetensors"))
    assert all(torch.equal(init[k].float(), final[k]) for k in final if "running" not in k and "num_batches" not in k)


def test_too_many_non_finite_steps_in_a_row_abort_with_a_clear_message(toy_labels, tmp_path):
    def hook(step, micro, loss):
        return loss * float("nan") if step >= 2 else loss

    with pytest.raises(NonFiniteLossError, match=r"not finite for 3 steps in a row.*optim.lr"):
        _train(tiny_config("train.max_steps=20", "train.max_nonfinite=3"), toy_labels, tmp_path / "run",
               loss_hook=hook)
    rows = read_log(tmp_path / "run")
    assert math.isfinite(rows[1]["loss"]) and all(math.isnan(r["loss"]) for r in rows[2:])
