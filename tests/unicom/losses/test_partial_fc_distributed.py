"""Two gloo processes on one global batch match one process: loss, embedding gradients and centre
gradients for r < 1 with the same sampled set; the feature subset is the same on both ranks; the
centres they save load on 1 and on 3 ranks."""
import textwrap

import torch

from tests.conftest import run_ranks
from unicom.losses import PartialFC, SparseCentreOptimizer, load_centre_shards

C, D, K = 37, 24, 2
HEAD = dict(sample_rate=0.4, feature_sample_dim=16, margin="arcface", m2=0.5, scale=16.0, subcenters=K, seed=3)
SPLIT = (7, 4)  # uneven local batches

WORKER = textwrap.dedent("""
    import sys, torch
    import torch.distributed as dist
    from unicom.losses import PartialFC, SparseCentreOptimizer, save_centre_shard
    inputs, out_dir = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    d = torch.load(inputs, weights_only=True)
    lo, hi = d["bounds"][rank], d["bounds"][rank + 1]
    head = PartialFC(d["C"], d["D"], **d["head"]).double()
    opt = SparseCentreOptimizer(head, kind="adamw", lr=0.01, weight_decay=0.1)
    emb = d["emb"][lo:hi].clone().requires_grad_(True)
    loss = head(emb, d["labels"][lo:hi], class_index=d["sample"])
    loss.backward()
    out = {"loss": loss.detach(), "emb_grad": emb.grad, "centre_grad": head.dense_weight_grad(),
           "range": torch.tensor([head.class_start, head.class_end]), "feat0": head.last_feature_index}
    opt.step()
    opt.zero_grad()
    head(emb.detach(), d["labels"][lo:hi]).backward()   # step 1: each rank samples on its own
    out["feat1"] = head.last_feature_index
    opt.step()
    out["weight"] = head.weight.detach().clone()
    save_centre_shard(out_dir + "/centres", head, opt)
    torch.save(out, f"{out_dir}/result_{rank}.pt")
    dist.destroy_process_group()
""")


def test_two_gloo_ranks_match_one_process(tmp_path):
    torch.manual_seed(0)
    B = sum(SPLIT)
    emb = torch.randn(B, D, dtype=torch.float64)
    labels = torch.tensor([0, 5, 5, 36, 18, 19, 2, 30, 18, 11, 25])  # both shards hold positives

    # one process, whole batch
    one = PartialFC(C, D, **HEAD).double()
    e1 = emb.clone().requires_grad_(True)
    loss1 = one(e1, labels)
    loss1.backward()
    sample = one.last_sample
    assert sample.numel() < C and torch.isin(labels, sample).all()

    inputs = tmp_path / "inputs.pt"
    torch.save({"C": C, "D": D, "head": HEAD, "emb": emb, "labels": labels, "sample": sample,
                "bounds": [0, SPLIT[0], B]}, inputs)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_ranks(script, [inputs, tmp_path], timeout=180)
    res = [torch.load(tmp_path / f"result_{r}.pt", weights_only=True) for r in range(2)]

    # loss: the same global mean on every rank, equal to the one-process loss
    for r in res:
        assert torch.allclose(r["loss"], loss1.detach(), rtol=1e-12)
    # embedding gradients: each rank gets the exact gradient of its own rows
    assert torch.allclose(torch.cat([r["emb_grad"] for r in res]), e1.grad, rtol=1e-10, atol=1e-14)
    # centre gradients: the shards tile the one-process gradient
    ranges = [tuple(r["range"].tolist()) for r in res]
    assert ranges == [(0, 19), (19, 37)]  # 37 = 19 + 18: the remainder goes to rank 0
    assert torch.allclose(torch.cat([r["centre_grad"] for r in res]), one.dense_weight_grad(),
                          rtol=1e-10, atol=1e-14)
    # the feature subset is the one-process subset at step 0, and identical on both ranks at step 1
    assert torch.equal(res[0]["feat0"], one.last_feature_index) and torch.equal(res[1]["feat0"], res[0]["feat0"])
    assert torch.equal(res[0]["feat1"], res[1]["feat1"]) and not torch.equal(res[0]["feat1"], res[0]["feat0"])

    # checkpoint saved on 2 ranks loads on 1 and on 3 with the same centres
    saved = torch.cat([r["weight"] for r in res])
    for world_size in (1, 3):
        parts = []
        for rank in range(world_size):
            h = PartialFC(C, D, rank=rank, world_size=world_size, **HEAD).double()
            o = SparseCentreOptimizer(h, kind="adamw")
            info = load_centre_shards(tmp_path / "centres", h, o)
            assert info == {"step": 2, "world_size": 2} and h.step == 2
            assert int(o.centre_state()["row_step"].max()) == 2
            parts.append(h.weight.detach())
        assert torch.equal(torch.cat(parts), saved)
