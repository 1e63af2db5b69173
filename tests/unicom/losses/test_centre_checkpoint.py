"""Centre shards: saved on 2 ranks, loaded on 1 and on 3 with the same centres and optimizer
state; standard safetensors with the class range in the metadata; bad sets are refused."""
import pytest
import torch
from safetensors import safe_open

from unicom.losses import PartialFC, SparseCentreOptimizer, load_centre_shards, save_centre_shard

C, D, K = 23, 6, 2


def make(rank, world_size, kind="adamw", **kw):
    head = PartialFC(C, D, subcenters=K, seed=7, rank=rank, world_size=world_size, **kw)
    return head, SparseCentreOptimizer(head, kind=kind, lr=0.1)


def saved_on_two(tmp_path, kind="adamw"):
    """Two ranks' heads with distinctive centres and state, saved; returns the global tensors."""
    weights, states = [], []
    for rank in range(2):
        head, opt = make(rank, 2, kind)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape))
        for t in opt.centre_state().values():
            t.copy_(torch.randint(0, 50, t.shape) if t.dtype == torch.long else torch.randn(t.shape))
        head.step = 17
        save_centre_shard(tmp_path, head, opt)
        weights.append(head.weight.detach().clone())
        states.append({k: v.clone() for k, v in opt.centre_state().items()})
    return torch.cat(weights), {k: torch.cat([s[k] for s in states]) for k in states[0]}


@pytest.mark.parametrize("world_size", [1, 3])
def test_saved_on_two_ranks_loads_on_one_and_three(tmp_path, world_size):
    weight, state = saved_on_two(tmp_path)
    parts_w, parts_s = [], {k: [] for k in state}
    for rank in range(world_size):
        head, opt = make(rank, world_size)
        info = load_centre_shards(tmp_path, head, opt)
        assert info == {"step": 17, "world_size": 2} and head.step == 17
        parts_w.append(head.weight.detach())
        for k, v in opt.centre_state().items():
            parts_s[k].append(v)
    assert torch.equal(torch.cat(parts_w), weight)
    for k in state:
        assert torch.equal(torch.cat(parts_s[k]), state[k]), k
    assert opt.centre_state()["row_step"].dtype == torch.long


def test_shard_files_are_safetensors_with_the_class_range(tmp_path):
    head, opt = make(1, 2, kind="sgd", sample_rate=0.5)
    path = save_centre_shard(tmp_path, head, opt)
    assert path.name == "centres-00001-of-00002.safetensors"
    assert not list(tmp_path.glob("*.tmp"))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == {"weight", "momentum_buffer"}
        assert torch.equal(f.get_tensor("weight"), head.weight.detach())
    assert (meta["class_start"], meta["class_end"], meta["num_classes"]) == ("12", "23", "23")
    assert (meta["rank"], meta["world_size"], meta["optimizer"], meta["subcenters"]) == ("1", "2", "sgd", "2")


def test_incomplete_or_mismatched_sets_are_refused(tmp_path):
    saved_on_two(tmp_path)
    head, opt = make(0, 1)
    other = PartialFC(C + 1, D, subcenters=K, rank=0, world_size=1)
    with pytest.raises(ValueError, match="num_classes=23, the head has 24"):
        load_centre_shards(tmp_path, other)
    sgd_head, sgd_opt = make(0, 1, kind="sgd")
    with pytest.raises(ValueError, match="'adamw' optimizer state"):
        load_centre_shards(tmp_path, sgd_head, sgd_opt)
    load_centre_shards(tmp_path, sgd_head, sgd_opt, strict=False)  # centres only
    (tmp_path / "centres-00001-of-00002.safetensors").unlink()
    with pytest.raises(ValueError, match="expected the shards of ranks 0..1"):
        load_centre_shards(tmp_path, head, opt)
    with pytest.raises(FileNotFoundError):
        load_centre_shards(tmp_path / "nowhere", head, opt)
