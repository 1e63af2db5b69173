"""PartialFC on one process: exact loss and gradients against a float64 dense reference written
another way (autograd through acos/logsumexp), sampling invariants, reproducibility, bad input."""
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from unicom.losses import PartialFC, init_centres, sample_class_centres, shard_range, uniform_subset
from unicom.losses.sampling import feature_subset, num_sampled_classes, remap_labels


def reference_loss(emb, W, labels, spec, K, classes=None, feat=None):
    """Dense float64 margin softmax over ``classes`` (global ids, all when None) and ``feat``."""
    C = W.shape[0] // K
    classes = torch.arange(C) if classes is None else classes
    Wk = W.view(C, K, -1)[classes]
    e = emb
    if feat is not None:
        Wk, e = Wk[..., feat], emb[:, feat]
    cos = torch.einsum("bd,skd->bsk", e / e.norm(dim=1, keepdim=True), Wk / Wk.norm(dim=2, keepdim=True))
    cos = cos.amax(dim=2)
    y = torch.searchsorted(classes, labels)
    onehot = F.one_hot(y, len(classes)).bool()
    t = cos[onehot]
    theta = torch.acos(t)
    ft = torch.cos(spec.m1 * theta + spec.m2) - spec.m3
    ft = torch.where(spec.m1 * theta + spec.m2 > math.pi, t - spec.m3 - spec.m2 * math.sin(spec.m2), ft)
    if spec.straight_through:
        ft = t + (ft - t).detach()
    neg = cos
    if spec.interclass_filter > 0:
        neg = torch.where((cos > spec.interclass_filter) & ~onehot, cos.detach() * 0, cos)
    logits = spec.scale * torch.where(onehot, ft.unsqueeze(1).expand_as(cos), neg)
    return (torch.logsumexp(logits, dim=1) - logits[onehot]).mean()


def run_both(head, emb, labels, **fwd):
    """(loss, emb grad, dense centre grad) of the head and of the reference on the same sample."""
    e1 = emb.clone().requires_grad_(True)
    loss = head(e1, labels, **fwd)
    loss.backward()
    W = head.weight.detach().double().clone().requires_grad_(True)
    e2 = emb.double().clone().requires_grad_(True)
    ref = reference_loss(e2, W, labels, head.spec, head.subcenters, head.last_sample, head.last_feature_index)
    ref.backward()
    return (loss, e1.grad, head.dense_weight_grad()), (ref, e2.grad, W.grad)


CASES = {
    "arcface": dict(margin="arcface", m2=0.5),
    "cosface": dict(margin="cosface", m3=0.35),
    "subcentre": dict(margin="arcface", m2=0.4, subcenters=3),
    "combined": dict(margin="combined", m1=0.9, m2=0.4, m3=0.15),
    "straight_through": dict(margin="arcface", straight_through=True),
    "filter": dict(margin="arcface", interclass_filter=0.1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_full_head_matches_float64_reference(case):
    torch.manual_seed(0)
    C, D, B = 41, 20, 17
    head = PartialFC(C, D, sample_rate=1.0, scale=16.0, **CASES[case]).double()
    emb = torch.randn(B, D, dtype=torch.float64)
    labels = torch.randint(0, C, (B,))
    labels[:3] = labels[3]  # repeated classes
    (loss, ge, gw), (ref, ge_ref, gw_ref) = run_both(head, emb, labels)
    assert head.last_sample is None and head.last_feature_index is None  # r = 1, d′ = D
    assert torch.allclose(loss, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(ge, ge_ref, rtol=1e-9, atol=1e-12)
    assert torch.allclose(gw, gw_ref, rtol=1e-9, atol=1e-12)
    assert not head.weight.grad.is_sparse


@pytest.mark.parametrize("case", ["arcface", "subcentre", "filter"])
def test_sampled_classes_and_features_match_reference_on_the_subset(case):
    torch.manual_seed(1)
    C, D, B = 200, 32, 24
    head = PartialFC(C, D, sample_rate=0.2, feature_sample_dim=20, scale=16.0, **CASES[case]).double()
    emb = torch.randn(B, D, dtype=torch.float64)
    labels = torch.randint(0, C, (B,))
    (loss, ge, gw), (ref, ge_ref, gw_ref) = run_both(head, emb, labels)
    assert head.last_sample.numel() == max(40, labels.unique().numel())
    assert head.last_feature_index.numel() == 20
    assert torch.allclose(loss, ref, rtol=1e-12)
    assert torch.allclose(ge, ge_ref, rtol=1e-9, atol=1e-12)
    assert torch.allclose(gw, gw_ref, rtol=1e-9, atol=1e-12)
    # the centre gradient is sparse, over exactly the sampled rows
    g = head.weight.grad
    assert g.is_sparse
    K = head.subcenters
    expect_rows = (head.last_sample.unsqueeze(1) * K + torch.arange(K)).reshape(-1)
    assert torch.equal(g._indices()[0], expect_rows)
    unselected = torch.ones(D, dtype=torch.bool)
    unselected[head.last_feature_index] = False
    assert torch.all(gw[:, unselected] == 0)


def test_float32_head_close_to_reference_and_bf16_embeddings():
    torch.manual_seed(2)
    C, D, B = 300, 64, 32
    head = PartialFC(C, D, sample_rate=0.5)
    emb = torch.randn(B, D)
    labels = torch.randint(0, C, (B,))
    (loss, ge, gw), (ref, ge_ref, gw_ref) = run_both(head, emb, labels)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss.double(), ref, rtol=1e-5)
    assert torch.allclose(ge.double(), ge_ref, rtol=1e-3, atol=1e-6)
    assert torch.allclose(gw.double(), gw_ref, rtol=1e-3, atol=1e-6)

    e16 = emb.bfloat16().requires_grad_(True)
    loss16 = head(e16, labels)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    loss16.backward()
    assert e16.grad.dtype == torch.bfloat16 and torch.isfinite(e16.grad.float()).all()


def test_two_forwards_before_one_backward_and_accumulation():
    """Scratch-buffer reuse must never corrupt a graph that is still waiting for its backward."""
    torch.manual_seed(3)
    C, D = 500, 16
    make = lambda: PartialFC(C, D, sample_rate=0.3, seed=5).double()
    e1, e2 = torch.randn(8, D, dtype=torch.float64), torch.randn(8, D, dtype=torch.float64)
    l1, l2 = torch.randint(0, C, (8,)), torch.randint(0, C, (8,))
    a = make()
    x1, x2 = e1.clone().requires_grad_(True), e2.clone().requires_grad_(True)
    (a(x1, l1) + a(x2, l2)).backward()
    b = make()
    y1, y2 = e1.clone().requires_grad_(True), e2.clone().requires_grad_(True)
    b(y1, l1).backward()
    g1 = b.dense_weight_grad()
    b.weight.grad = None
    b(y2, l2).backward()
    g2 = b.dense_weight_grad()
    assert torch.allclose(x1.grad, y1.grad) and torch.allclose(x2.grad, y2.grad)
    assert torch.allclose(a.dense_weight_grad(), g1 + g2)


# ---- sampling ------------------------------------------------------------------------------------

def test_sample_keeps_positives_has_the_right_size_and_remaps_labels():
    C = 1000
    head = PartialFC(C, 8, sample_rate=0.05, seed=11)
    for step in range(20):
        labels = torch.randint(0, C, (64 if step % 2 else 7,))
        if step == 3:
            labels = torch.arange(64) * 15  # more positives (64) than ⌊r·C⌋ = 50
        head(torch.randn(labels.numel(), 8), labels)
        sample = head.last_sample
        assert torch.all(sample[1:] > sample[:-1])                       # sorted, distinct
        assert torch.isin(labels, sample).all()                          # every positive
        assert sample.numel() == max(math.floor(0.05 * C), labels.unique().numel())
        cols = remap_labels(labels, sample)                              # label → its column
        assert torch.equal(sample[cols], labels)


def test_num_sampled_classes_floor():
    assert num_sampled_classes(0.29, 100, 0) == 29
    assert num_sampled_classes(0.1, 1_000_000, 512) == 100_000
    assert num_sampled_classes(0.1, 10, 4) == 4


def test_negatives_are_uniform_without_replacement():
    gen = torch.Generator().manual_seed(0)
    positives = torch.tensor([3, 7, 8, 15])
    counts = Counter()
    trials = 4000
    for _ in range(trials):
        s = sample_class_centres(positives, 20, 8, gen)
        assert s.numel() == 8 and torch.unique(s).numel() == 8 and torch.isin(positives, s).all()
        counts.update(s[~torch.isin(s, positives)].tolist())
    negatives = [c for c in range(20) if c not in positives.tolist()]
    assert set(counts) == set(negatives)
    expect = trials * 4 / 16
    chi2 = sum((counts[c] - expect) ** 2 / expect for c in negatives)
    assert chi2 < 40.0  # 15 degrees of freedom: P(chi2 > 40) < 0.001


@pytest.mark.parametrize("n_total,n_pick", [(10_000, 37), (10_000, 4000), (10_000, 6000), (50, 50)])
def test_uniform_subset_is_sorted_distinct_and_in_range(n_total, n_pick):
    s = uniform_subset(n_total, n_pick, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert s.numel() == n_pick and torch.all(s[1:] > s[:-1]) and s.min() >= 0 and s.max() < n_total


def test_draws_are_reproducible_from_seed_and_step():
    C, D = 5000, 32
    a = PartialFC(C, D, sample_rate=0.1, feature_sample_dim=12, seed=9)
    b = PartialFC(C, D, sample_rate=0.1, feature_sample_dim=12, seed=9)
    labels, emb = torch.randint(0, C, (16,)), torch.randn(16, D)
    seq = []
    for _ in range(3):
        a(emb, labels)
        seq.append((a.last_sample.clone(), a.last_feature_index.clone()))
    assert not torch.equal(seq[0][0], seq[1][0]) and not torch.equal(seq[0][1], seq[1][1])
    b.set_rng_state(a.rng_state())          # resume after 3 steps ...
    a(emb, labels)
    b(emb, labels)
    assert torch.equal(a.last_sample, b.last_sample)
    assert torch.equal(a.last_feature_index, b.last_feature_index)
    c = PartialFC(C, D, sample_rate=0.1, feature_sample_dim=12, seed=9)
    c.set_rng_state({"seed": 9, "step": 1})  # ... or replay any step
    c(emb, labels)
    assert torch.equal(c.last_sample, seq[1][0]) and torch.equal(c.last_feature_index, seq[1][1])
    assert b.state_dict()["_extra_state"] == {"seed": 9, "step": 4}


def test_feature_subset_depends_on_seed_and_step_only():
    f = [feature_subset(512, 256, seed=4, step=7, device=torch.device("cpu")) for _ in range(2)]
    assert torch.equal(f[0], f[1]) and f[0].numel() == 256 and torch.all(f[0][1:] > f[0][:-1])
    assert not torch.equal(f[0], feature_subset(512, 256, seed=4, step=8, device=torch.device("cpu")))
    assert feature_subset(512, None, 4, 7, torch.device("cpu")) is None


def test_shards_and_initial_centres_do_not_depend_on_world_size():
    C, D = 10_007, 4
    full = init_centres(0, C, 2, D, seed=3)
    for world_size in (2, 3, 7):
        ranges = [shard_range(C, world_size, r) for r in range(world_size)]
        sizes = [e - s for s, e in ranges]
        assert ranges[0][0] == 0 and ranges[-1][1] == C
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)  # remainder first
        parts = [init_centres(s, e, 2, D, seed=3) for s, e in ranges]
        assert torch.equal(torch.cat(parts), full)
    heads = [PartialFC(C, D, subcenters=2, seed=3, rank=r, world_size=3) for r in range(3)]
    assert torch.equal(torch.cat([h.weight.detach() for h in heads]), full)


# ---- bad input -------------------------------------------------------------------------------------

def test_bad_input_gets_a_clear_error():
    head = PartialFC(100, 16)
    emb = torch.randn(4, 16)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=100\)"):
        head(emb, torch.tensor([0, 1, 2, 100]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=100\)"):
        head(emb, torch.tensor([0, -1, 2, 3]))
    with pytest.raises(ValueError, match="embedding dimension mismatch.*got 15.*embed_dim=16"):
        head(torch.randn(4, 15), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="2-D"):
        head(torch.randn(4, 16, 1), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="integer"):
        head(emb, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="batch size"):
        head(emb, torch.tensor([0, 1, 2]))
    for r in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"sample_rate must lie in \(0, 1\]"):
            PartialFC(100, 16, sample_rate=r)
    with pytest.raises(ValueError, match="feature_sample_dim d'=17 exceeds embed_dim D=16"):
        PartialFC(100, 16, feature_sample_dim=17)
    with pytest.raises(ValueError, match="class_index must include every positive"):
        PartialFC(100, 16, sample_rate=0.5)(emb, torch.tensor([0, 1, 2, 3]), class_index=torch.tensor([0, 1, 2]))


def test_workspace_reuses_free_buffers_only():
    from unicom.losses.workspace import Workspace

    ws, cpu = Workspace(), torch.device("cpu")
    a = ws.get("x", (4, 8), torch.float32, cpu)
    b = ws.get("x", (4, 8), torch.float32, cpu)   # `a` is still alive: fresh memory
    assert b.data_ptr() != a.data_ptr()
    ptr = b.data_ptr()
    del a, b
    c = ws.get("x", (2, 8), torch.float32, cpu)   # free again (and smaller): the same memory
    assert c.shape == (2, 8) and c.data_ptr() == ptr
    d = ws.get("x", (2, 8), torch.float32, cpu)   # `c` holds it
    assert d.data_ptr() != ptr
