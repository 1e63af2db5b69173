import textwrap

import torch

from tests.conftest import run_ranks
from unicom.runtime.distributed import get_world_size, init_distributed


def test_world_size_one_needs_no_process_group(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main) == (0, 1, True)
    assert not torch.distributed.is_initialized() and get_world_size() == 1


WORKER = textwrap.dedent("""
    import sys, torch
    from unicom.runtime.distributed import (init_distributed, all_reduce_sum, all_gather_object, broadcast_object,
                                    cleanup_distributed)
    from unicom.data.wds_reader import SkipCounter
    ctx = init_distributed("cpu")
    assert torch.distributed.get_backend() == "gloo"
    t = all_reduce_sum(torch.tensor([ctx.rank + 1.0]))
    names = all_gather_object(f"r{ctx.rank}")
    seed = broadcast_object(1234 if ctx.rank == 0 else None)
    c = SkipCounter(); c.add("bad_image", ctx.rank + 1)
    total = c.all_reduce().as_dict()
    print(f"RESULT {ctx.rank} {ctx.world_size} {t.item()} {','.join(names)} {seed} {total['bad_image']}")
    cleanup_distributed()
""")


def test_two_process_gloo_init_from_torchrun_env(tmp_path):
    """Start 2 ranks ourselves with torchrun's environment variables and check collectives."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    outs = run_ranks(script, timeout=120)
    lines = sorted(line for out in outs for line in out.splitlines() if line.startswith("RESULT"))
    assert lines == ["RESULT 0 2 3.0 r0,r1 1234 3", "RESULT 1 2 3.0 r0,r1 1234 3"]
