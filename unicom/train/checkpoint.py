"""Saving and restoring a training run's checkpoints; the layout and what "complete" means are
``unicom.formats.checkpoint``'s (docs/formats.md, "Training run").

Rank 0 writes the shared files (backbone, optimizer, encoder record, ``state.json``), every rank
its own centre shard. ``state.json`` is written after a collective that follows every rank's
shard, and ``checkpoints/latest`` last, after a barrier: a crash at any moment leaves ``latest``
naming a complete step. Each file is written atomically (``unicom.formats.atomic_io``).
"""
from __future__ import annotations

import base64
import contextlib
import random
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from ..formats import checkpoint as layout
from ..runtime.distributed import DistContext, all_gather_object, barrier


class DamagedFileError(RuntimeError):
    """A checkpoint file exists but cannot be used (truncated, corrupt, or of another model)."""


@contextlib.contextmanager
def _reading(path: Path):
    """Re-raise any failure while reading ``path`` as a one-line DamagedFileError naming it."""
    try:
        yield
    except layout.RefusedPickleError:
        raise
    except Exception as exn:  # noqa: BLE001 (a damaged file raises zip, safetensors, JSON or EOF errors)
        first = (str(exn).strip().splitlines() or [""])[0][:200]
        raise DamagedFileError(f"{path} cannot be used ({type(exn).__name__}: {first})") from exn


# --------------------------------------------------------------------------------------------
# JSON encoding of RNG states and other small tensors
# --------------------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Tensors and arrays become ``{"__tensor__": base64, dtype, shape}``; containers recurse."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {"__tensor__": base64.b64encode(raw).decode(),
                "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode(), "dtype": str(obj.dtype),
                "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def from_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            dtype = getattr(torch, obj["dtype"])
            raw = bytearray(base64.b64decode(obj["__tensor__"]))
            flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            return flat.view(dtype).reshape(obj["shape"]).clone()
        if "__ndarray__" in obj:
            return np.frombuffer(base64.b64decode(obj["__ndarray__"]), dtype=obj["dtype"]).reshape(obj["shape"]).copy()
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


def capture_rng(device: torch.device) -> Dict[str, Any]:
    """This process's Python, numpy, torch CPU (and CUDA device) RNG states, JSON-ready."""
    np_state = np.random.get_state()
    state = {"python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
             "numpy": [np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return to_jsonable(state)


def restore_rng(state: Dict[str, Any], device: torch.device) -> None:
    s = from_jsonable(state)
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(s["torch"])
    if device.type == "cuda" and "cuda" in s:
        torch.cuda.set_rng_state(s["cuda"], device)


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------
def find_latest(run_dir) -> Optional[Path]:
    """The complete step ``checkpoints/latest`` names, or None when there is none yet."""
    return layout.find_latest(run_dir)


def list_steps(run_dir) -> List[int]:
    """The step numbers of every ``step_N`` folder of the run, ascending."""
    return [n for n, _ in layout.list_steps(layout.checkpoint_root(run_dir))]


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------
def save_checkpoint(run_dir, step: int, ctx: DistContext, model: nn.Module, head: nn.Module,
                    opt_backbone: torch.optim.Optimizer, opt_head: torch.optim.Optimizer,
                    shared_state: Dict[str, Any], rank_state: Dict[str, Any], encoder: Dict[str, Any],
                    keep: int = 0, protect: Optional[int] = None) -> Path:
    """Write ``checkpoints/step_N`` from every rank, then point ``latest`` at it.

    ``model`` is the plain (unwrapped) backbone. ``shared_state`` goes into state.json as is
    (rank 0's view); ``rank_state`` (RNG states, data cursors, …) is gathered from all ranks into
    ``state.json["ranks"]``. ``keep`` > 0 prunes all but the newest ``keep`` step dirs, never
    the step ``protect`` (the newest checkpoint known to be healthy).
    """
    from ..losses import save_centre_shard

    d = layout.step_dir(run_dir, step)
    if ctx.is_main:
        if d.exists():  # a partial dir from a crashed attempt at this very step
            shutil.rmtree(d)
        d.mkdir(parents=True)
    barrier()
    save_centre_shard(str(layout.centres_dir(d)), head, opt_head)
    ranks = all_gather_object(rank_state)  # every rank's shard is on disk once this returns
    if ctx.is_main:
        layout.write_backbone(d, {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()})
        layout.write_optimizer(d, opt_backbone.state_dict())
        layout.write_encoder(d, encoder)
        layout.write_state(d, {**shared_state, "ranks": ranks})  # the commit mark: written last
    barrier()
    if ctx.is_main:
        layout.write_latest(run_dir, d)
        if keep and keep > 0:
            for old in list_steps(run_dir)[:-keep]:
                if old not in (step, protect):
                    shutil.rmtree(layout.step_dir(run_dir, old), ignore_errors=True)
    barrier()
    return d


def read_state(step_path) -> Dict[str, Any]:
    """The step's ``state.json``."""
    return layout.read_state(Path(step_path))


def load_checkpoint(step_path, model: nn.Module, head: nn.Module, opt_backbone: torch.optim.Optimizer,
                    opt_head: torch.optim.Optimizer, device: torch.device) -> Dict[str, Any]:
    """Restore the backbone, its optimizer and the head (on any world size); return state.json.

    The optimizer's hyper-parameters (LR, betas, weight decay …) stay those of ``opt_backbone``
    as built from the config, so that an override given on resume takes effect; only its
    per-parameter state comes from the file.
    """
    from ..losses import load_centre_shards

    step_path = Path(step_path)
    with _reading(step_path / layout.STATE_FILE):
        state = read_state(step_path)
    with _reading(step_path / layout.BACKBONE_FILE):
        model.load_state_dict(layout.read_backbone(step_path), strict=True)
    configured = [{k: v for k, v in g.items() if k != "params"} for g in opt_backbone.param_groups]
    with _reading(step_path / layout.OPTIMIZER_FILE):
        opt_backbone.load_state_dict(layout.read_optimizer(step_path, map_location=device))
    for group, hyper in zip(opt_backbone.param_groups, configured):
        group.update(hyper)
    with _reading(layout.centres_dir(step_path)):
        load_centre_shards(str(layout.centres_dir(step_path)), head, opt_head)
    return state
