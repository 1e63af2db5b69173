"""Multi-process training over gloo, started by the test itself with torchrun's environment.

One pair of processes does two things (process start-up dominates the cost): it checks that a
DDP step on 2 ranks gives the gradients of one process on the whole batch, then it runs
``unicom-train`` on 2 ranks. The 2-rank checkpoint is then resumed on 1 rank in this process.
"""
import json
import textwrap

import torch
from safetensors import safe_open

from tests.conftest import run_ranks
from tests.unicom.train.support import TINY_OVERRIDES, tiny_config
from unicom.train.loop import train
from unicom.train.run_log import read_log

WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, ".")
    from tests.unicom.train.support import tiny_config
    from unicom.runtime.distributed import init_distributed
    from unicom.train.cli import main
    from unicom.train.loop import build_head, forward_backward
    from unicom.train.model import build_backbone

    # 1. gradients: 2 ranks x 2 micro-batches of 2 against 1 process on the batch of 8
    cfg = tiny_config("head.sample_rate=1.0", "head.feature_sample_rate=null")

    def fresh():
        torch.manual_seed(0)
        m = build_backbone(cfg)
        for mod in m.modules():  # BN batch statistics are per rank by design; compare the rest
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.eval()
        return m

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 36, (8,), generator=g)
    ref_model, ref_head = fresh(), build_head(cfg, 36, 32, 1)  # before the process group exists
    forward_backward(ref_model, ref_head, [(x, y)], torch.device("cpu"))
    ctx = init_distributed("cpu")
    model = torch.nn.parallel.DistributedDataParallel(fresh())
    head = build_head(cfg, 36, 32, ctx.world_size)
    xs, ys = x[4 * ctx.rank:4 * ctx.rank + 4], y[4 * ctx.rank:4 * ctx.rank + 4]
    forward_backward(model, head, [(xs[:2], ys[:2]), (xs[2:], ys[2:])], torch.device("cpu"))
    worst = max(float((a.grad - b.grad).abs().max() / (b.grad.abs().max() + 1e-12))
                for a, b in zip(model.module.parameters(), ref_model.parameters()))
    hg, rg = head.dense_weight_grad(), ref_head.dense_weight_grad()[head.class_start:head.class_end]
    head_err = float((hg - rg).abs().max() / (rg.abs().max() + 1e-12))
    print(f"GRADS {ctx.rank} {worst:.2e} {head_err:.2e}", flush=True)
    del model

    # 2. the trainer on 2 ranks
    sys.exit(main(sys.argv[1:]))
""")


def test_two_rank_gloo_gradients_run_and_resume_on_one_rank(toy_labels, tmp_path):
    shards, labels = toy_labels
    run = tmp_path / "run"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = ["--data", str(shards), "--labels", str(labels), "--output", str(run), *TINY_OVERRIDES,
            "data.batch_size=8", "train.max_steps=6", "train.ckpt_every=3", "train.stop_after_steps=4"]
    outs = run_ranks(script, args, with_stderr=True)  # the trainer's log records are on stderr

    # DDP averaging + the head's embedding_grad_scale + no_sync accumulation: exact gradients
    grads = [line.split() for out in outs for line in out.splitlines() if line.startswith("GRADS")]
    assert len(grads) == 2
    for _, rank, backbone_err, head_err in grads:
        assert float(backbone_err) < 1e-4 and float(head_err) < 1e-4, (rank, backbone_err, head_err)

    # the 2-rank run: 4 steps, a checkpoint at step 3 with one centre shard per rank
    assert "2 rank(s) on cpu, global batch 16" in outs[0]
    step3 = run / "checkpoints" / "step_3"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_3"
    shard_files = sorted(p.name for p in (step3 / "centres").iterdir())
    assert shard_files == ["centres-00000-of-00002.safetensors", "centres-00001-of-00002.safetensors"]
    state = json.loads((step3 / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["data"]["num_streams"] == 2
    saved = []
    for name in shard_files:
        with safe_open(str(step3 / "centres" / name), "pt") as f:
            saved.append(f.get_tensor("weight"))
    saved = torch.cat(saved)
    assert saved.shape == (36, 32)

    # resume the 2-rank checkpoint on 1 rank (in this process): the centres come back whole
    from unicom.losses import PartialFC, SparseCentreOptimizer, load_centre_shards

    head = PartialFC(36, 32)
    load_centre_shards(str(step3 / "centres"), head, SparseCentreOptimizer(head))
    assert torch.equal(head.weight.detach(), saved)
    cfg = tiny_config("data.batch_size=8", "train.max_steps=6", "train.ckpt_every=3")
    summary = train(cfg, str(shards), str(labels), str(run), resume=True)
    assert summary["finished"] and not summary["resumed_exactly"] and summary["world_size"] == 1
    # the run's length is kept in samples: 3 steps × 16 remain, i.e. 6 steps of the 1-rank batch of 8
    assert summary["step"] == 9 and summary["samples"] == 6 * 16
    rows = read_log(run)
    assert [r["step"] for r in rows] == list(range(1, 10))
    assert all(r["loss"] == r["loss"] for r in rows)  # finite
    assert (run / "export" / "config.json").is_file()
    final = run / "checkpoints" / "step_9" / "centres"
    assert [p.name for p in final.iterdir()] == ["centres-00000-of-00001.safetensors"]
