"""torch.distributed set-up from torchrun's environment, and small collective helpers.

A world size of 1 never initialises ``torch.distributed`` (tests, notebooks, the CPU demo);
every helper here then degrades to the single-process answer. NCCL is used when the run's
device is CUDA, gloo otherwise.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist

from .device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run: its global rank, the world size, its local rank
    on the node and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the only rank that writes shared files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def env_world() -> tuple:
    """Read (rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device: Optional[Union[str, torch.device]] = None,
                     timeout_minutes: int = 60) -> DistContext:
    """Initialise the process group from torchrun's environment and pick this rank's device.

    With WORLD_SIZE 1 (or unset) nothing is initialised. With CUDA, each process takes the GPU
    of its LOCAL_RANK and the NCCL backend; on the CPU the gloo backend. Calling it again
    returns the existing context.
    """
    rank, world_size, local_rank = env_world()
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but MASTER_ADDR is not set: start multi-process runs "
                "with torchrun (e.g. `torchrun --nproc_per_node 2 -m ...`)")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = dict(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def is_dist() -> bool:
    """True when a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank, 0 without a process group."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """World size, 1 without a process group."""
    return dist.get_world_size() if is_dist() else 1


def barrier() -> None:
    """Synchronise all ranks; a no-op for a single process."""
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` in place across ranks and return it (unchanged for one process)."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> List[Any]:
    """Gather one picklable Python object from every rank, in rank order.

    Only for small trusted in-run metadata (counters, shard lists); never for files.
    """
    if not is_dist():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send ``obj`` from rank ``src`` to every rank and return it."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def comm_device() -> torch.device:
    """The device collectives run on: this rank's GPU under NCCL, the CPU otherwise (also
    without a process group)."""
    if not is_dist():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(arr: np.ndarray) -> List[np.ndarray]:
    """All-gather a float32 [n_r, ...] array from every rank (n_r may differ); rank order."""
    if not is_dist():
        return [arr]
    dev = comm_device()
    n = torch.tensor([arr.shape[0]], dtype=torch.int64, device=dev)
    ns = [torch.zeros_like(n) for _ in range(get_world_size())]
    dist.all_gather(ns, n)
    ns = [int(v.item()) for v in ns]
    m = max(ns)
    buf = torch.zeros((m,) + arr.shape[1:], dtype=torch.float32, device=dev)
    buf[:arr.shape[0]] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(dev)
    outs = [torch.empty_like(buf) for _ in ns]
    dist.all_gather(outs, buf)
    return [o[:k].cpu().numpy() for o, k in zip(outs, ns)]


def broadcast_rows(arr: Optional[np.ndarray], shape: Tuple[int, ...], src: int = 0) -> np.ndarray:
    """Broadcast a float32 array of known ``shape`` from rank ``src``."""
    if not is_dist():
        return arr
    dev = comm_device()
    t = (torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(dev) if get_rank() == src
         else torch.empty(shape, dtype=torch.float32, device=dev))
    dist.broadcast(t, src=src)
    return t.cpu().numpy()


def cleanup_distributed() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
