"""Checkpoints of a training run (DESIGN.md, "Training run: RUN/").

``RUN/checkpoints/step_N/`` holds

* ``backbone.safetensors``: the encoder's state dict, plain unprefixed keys (DDP unwrapped);
* ``encoder.json``: the export ``config.json`` record (format, version, arch, embed_dim,
  image_size, mean, std), so ``unicom.load`` can load a checkpoint dir like an export;
* ``centres/``: the Partial FC class centres and their optimizer state, one file per rank with
  the global class range in its metadata (``unicom.losses.save_centre_shard``), loadable on any
  world size;
* ``optimizer.pt``: the backbone optimizer's state dict (tensors, numbers and strings only; read
  back with ``torch.load(weights_only=True)``);
* ``state.json``: step, epoch, samples seen, LR schedule, loss scaler, every rank's RNG states,
  the head's sampling RNG, the data position, skip counts and a few counters.

``RUN/checkpoints/latest`` names the newest complete step. It is written last and atomically,
after a barrier: every rank has written its files by then. Rank 0 writes the shared files, every
rank its own centre shard. Each file is written atomically (``name.tmp`` then ``os.replace``).
"""
from __future__ import annotations

import base64
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..atomic_io import atomic_path, atomic_write, write_json, write_text
from ..distributed import DistContext, all_gather_object, barrier

CKPT_DIR = "checkpoints"
LATEST = "latest"
BACKBONE_FILE = "backbone.safetensors"
ENCODER_FILE = "encoder.json"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
CENTRES_DIR = "centres"
_STEP_RE = re.compile(r"^step_(\d+)$")


# --------------------------------------------------------------------------------------------
# JSON encoding of RNG states and other small tensors
# --------------------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Tensors and arrays become ``{"__tensor__": base64, dtype, shape}``; containers recurse."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return {"__tensor__": base64.b64encode(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"").decode(),
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
def checkpoint_root(run_dir) -> Path:
    return Path(run_dir) / CKPT_DIR


def step_dir(run_dir, step: int) -> Path:
    return checkpoint_root(run_dir) / f"step_{int(step)}"


def find_latest(run_dir) -> Optional[Path]:
    """The step dir named by ``checkpoints/latest``, or None when there is no complete one."""
    path = checkpoint_root(run_dir) / LATEST
    if not path.is_file():
        return None
    name = path.read_text().strip()
    d = checkpoint_root(run_dir) / name
    if not _STEP_RE.match(name) or not (d / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} names {name!r}, which is not a complete checkpoint dir")
    return d


def list_steps(run_dir) -> List[int]:
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir())


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------
def _save_safetensors(path: Path, model: nn.Module) -> None:
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "unicom-train-backbone"})


def _torch_save_atomic(obj: Any, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


def save_checkpoint(run_dir, step: int, ctx: DistContext, model: nn.Module, head: nn.Module,
                    opt_backbone: torch.optim.Optimizer, opt_head: torch.optim.Optimizer,
                    shared_state: Dict[str, Any], rank_state: Dict[str, Any], encoder: Dict[str, Any],
                    keep: int = 0) -> Path:
    """Write ``checkpoints/step_N`` from every rank, then point ``latest`` at it.

    ``model`` is the plain (unwrapped) backbone. ``shared_state`` goes into state.json as is
    (rank 0's view); ``rank_state`` (RNG states, data cursors, …) is gathered from all ranks into
    ``state.json["ranks"]``. ``keep`` > 0 prunes all but the newest ``keep`` step dirs.
    """
    from ..losses import save_centre_shard

    d = step_dir(run_dir, step)
    if ctx.is_main:
        if d.exists():  # a partial dir from a crashed attempt at this very step
            shutil.rmtree(d)
        d.mkdir(parents=True)
    barrier()
    save_centre_shard(str(d / CENTRES_DIR), head, opt_head)
    ranks = all_gather_object(rank_state)
    if ctx.is_main:
        _save_safetensors(d / BACKBONE_FILE, model)
        _torch_save_atomic(opt_backbone.state_dict(), d / OPTIMIZER_FILE)
        write_json(d / ENCODER_FILE, encoder)
        write_json(d / STATE_FILE, {**shared_state, "ranks": ranks})
    barrier()
    if ctx.is_main:
        write_text(checkpoint_root(run_dir) / LATEST, d.name + "\n")
        if keep and keep > 0:
            for old in list_steps(run_dir)[:-keep]:
                if old != step:
                    shutil.rmtree(step_dir(run_dir, old), ignore_errors=True)
    barrier()
    return d


def read_state(step_path) -> Dict[str, Any]:
    import json

    return json.loads((Path(step_path) / STATE_FILE).read_text())


def load_checkpoint(step_path, model: nn.Module, head: nn.Module, opt_backbone: torch.optim.Optimizer,
                    opt_head: torch.optim.Optimizer, device: torch.device) -> Dict[str, Any]:
    """Restore the backbone, its optimizer and the head (on any world size); return state.json."""
    from ..losses import load_centre_shards

    step_path = Path(step_path)
    state = load_file(str(step_path / BACKBONE_FILE))
    model.load_state_dict(state, strict=True)
    opt_state = torch.load(str(step_path / OPTIMIZER_FILE), map_location=device, weights_only=True)
    opt_backbone.load_state_dict(opt_state)
    load_centre_shards(str(step_path / CENTRES_DIR), head, opt_head)
    return read_state(step_path)
