"""SparseCentreOptimizer: only sampled rows and their state move; sampled rows follow torch's
SGD / AdamW exactly; schedulers, state_dict, loss-scale handling and accumulation work."""
import pytest
import torch

from unicom.losses import PartialFC, SparseCentreOptimizer

C, D, B = 400, 16, 12


def step_once(head, opt, seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(B, D, generator=g)
    labels = torch.randint(0, C, (B,), generator=g)
    opt.zero_grad()
    head(emb, labels).backward()
    opt.step()
    return head.last_sample


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_unsampled_rows_and_their_state_are_bit_identical(kind):
    head = PartialFC(C, D, sample_rate=0.1, seed=1)
    opt = SparseCentreOptimizer(head, kind=kind, lr=0.1, weight_decay=0.05, momentum=0.9)
    for s in range(3):  # build up non-zero momentum / moments first
        step_once(head, opt, s)
    before_w = head.weight.detach().clone()
    before_state = {k: v.clone() for k, v in opt.centre_state().items()}
    assert any(bool(v.abs().sum() > 0) for v in before_state.values())
    sampled = step_once(head, opt, 99)
    rows = torch.zeros(C, dtype=torch.bool)
    rows[sampled] = True
    assert 0 < rows.sum() < C
    assert torch.equal(head.weight.detach()[~rows], before_w[~rows])
    assert not torch.equal(head.weight.detach()[rows], before_w[rows])
    for name, t in opt.centre_state().items():
        assert torch.equal(t[~rows], before_state[name][~rows]), name
        assert not torch.equal(t[rows], before_state[name][rows]), name


@pytest.mark.parametrize("kind,kwargs", [
    ("adamw", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)),
    ("sgd", dict(lr=0.05, weight_decay=0.01, momentum=0.9)),
    ("sgd", dict(lr=0.05, weight_decay=0.0, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.05, weight_decay=0.01, momentum=0.0)),
])
def test_every_row_sampled_equals_torch_optimizer(kind, kwargs):
    """With r = 1 every row is sampled every step: the update is torch's dense one."""
    head = PartialFC(C, D, sample_rate=1.0, seed=2).double()
    ref_w = torch.nn.Parameter(head.weight.detach().clone())
    opt = SparseCentreOptimizer(head, kind=kind, **kwargs)
    ref = (torch.optim.AdamW if kind == "adamw" else torch.optim.SGD)([ref_w], **kwargs)
    for s in range(4):
        g = torch.randn(C, D, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        head.weight.grad, ref_w.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    assert torch.allclose(head.weight.detach(), ref_w.detach(), rtol=1e-12, atol=1e-14)


def test_adamw_row_follows_its_own_steps():
    """A row sampled twice equals AdamW run on just those two gradients (per-row bias correction)."""
    head = PartialFC(10, D, sample_rate=0.5).double()
    opt = SparseCentreOptimizer(head, kind="adamw", lr=0.01, weight_decay=0.1)
    ref_w = torch.nn.Parameter(head.weight.detach()[3:4].clone())
    ref = torch.optim.AdamW([ref_w], lr=0.01, weight_decay=0.1)
    grads = [torch.randn(1, D, dtype=torch.float64) for _ in range(3)]
    for k, rows in enumerate([[3, 5], [1, 2], [3, 4]]):
        head.weight.grad = torch.sparse_coo_tensor(torch.tensor([rows]), torch.cat([grads[k]] * 2),
                                                   head.weight.shape, check_invariants=True)
        opt.step()
        if 3 in rows:
            ref_w.grad = grads[k].clone()
            ref.step()
    assert torch.allclose(head.weight.detach()[3:4], ref_w.detach(), rtol=1e-12)
    assert opt.centre_state()["row_step"].tolist() == [0, 1, 1, 2, 1, 1, 0, 0, 0, 0]


def test_scheduler_state_dict_and_loss_scale():
    head = PartialFC(C, D, sample_rate=0.2, seed=4)
    opt = SparseCentreOptimizer(head, kind="adamw", lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    step_once(head, opt, 0)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)

    # state_dict round trip: a copy continues exactly like the original
    head2 = PartialFC(C, D, sample_rate=0.2, seed=4)
    head2.load_state_dict(head.state_dict())
    opt2 = SparseCentreOptimizer(head2, kind="adamw", lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.centre_state()["row_step"].dtype == torch.long
    step_once(head, opt, 1)
    step_once(head2, opt2, 1)
    assert torch.equal(head.weight, head2.weight)

    # grad_scale: a loss scaled by 1024 gives the unscaled step; a non-finite gradient is skipped
    h3, h4 = (PartialFC(C, D, sample_rate=0.2, seed=4) for _ in range(2))
    o3, o4 = SparseCentreOptimizer(h3, lr=0.1), SparseCentreOptimizer(h4, lr=0.1)
    emb, labels = torch.randn(B, D), torch.randint(0, C, (B,))
    h3(emb, labels).backward()
    (h4(emb, labels) * 1024).backward()
    o3.step()
    o4.step(grad_scale=1024)
    assert torch.allclose(h3.weight, h4.weight, atol=1e-7)
    h4(emb, labels).backward()
    h4.weight.grad._values()[0, 0] = float("inf")
    before = h4.weight.detach().clone()
    assert not o4.grads_finite()
    assert o4.step(grad_scale=2.0) is False and torch.equal(h4.weight, before)


def test_accumulated_sparse_gradients_are_summed():
    head = PartialFC(C, D, sample_rate=0.3, seed=6).double()
    opt = SparseCentreOptimizer(head, kind="sgd", lr=1.0, momentum=0.0)
    emb = torch.randn(2 * B, D, dtype=torch.float64)
    labels = torch.randint(0, C, (2 * B,))
    head(emb[:B], labels[:B]).backward()
    g1 = head.dense_weight_grad()
    head(emb[B:], labels[B:]).backward()  # a different sample: rows overlap and differ
    total = head.dense_weight_grad()
    before = head.weight.detach().clone()
    opt.step()
    assert not torch.equal(total, g1)
    assert torch.allclose(head.weight.detach(), before - total)


def test_bad_settings_are_refused():
    head = PartialFC(C, D)
    with pytest.raises(ValueError, match="kind"):
        SparseCentreOptimizer(head, kind="lamb")
    with pytest.raises(ValueError, match="momentum"):
        SparseCentreOptimizer(head, kind="sgd", momentum=1.0)
    with pytest.raises(ValueError, match="nesterov"):
        SparseCentreOptimizer(head, kind="adamw", nesterov=True)
