"""Safe reading of encoder weights and strict, well-explained loading into a model.

* ``.pt``/``.pth``/``.bin`` files are read with ``torch.load(weights_only=True)``: pickles
  that hold anything but tensors and plain containers are refused, never executed.
* ``.safetensors`` files involve no pickle at all.
* Floating tensors become fp32 (the released files are fp16), and the ``module.``
  (DataParallel/DDP), ``model.`` and ``_orig_mod.`` (``torch.compile``) prefixes are stripped.
* A state dict that does not fit the architecture gets an error naming the first missing,
  unexpected and mis-shaped keys with their shapes.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

import torch
import torch.nn as nn

from ..formats.export import non_finite_keys

STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")
# Keys under which training scripts commonly nest the weights: {"state_dict": {...}, "epoch": 3}.
NESTED_KEYS = ("state_dict", "model", "module", "backbone", "model_state_dict")
SAFETENSORS_SUFFIX = ".safetensors"
SHOW = 5  # how many offending keys an error names


class UnsafeCheckpointError(ValueError):
    """A weights file holding pickled objects other than tensors."""


class StateDictMismatchError(ValueError):
    """A state dict whose keys or shapes do not fit the model."""


class NonFiniteWeightsError(ValueError):
    """Weights holding NaN or infinite values (a diverged run): the model would output NaN."""


# torch names the global it refused: "Unsupported global: GLOBAL argparse.Namespace was not …" or
# "Trying to load unsupported GLOBAL posix.getcwd whose module posix is blocked"
_REFUSED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)


def refused_pickle_message(path: Union[str, Path], exn: BaseException) -> str:
    """One line for a weights file that ``torch.load(weights_only=True)`` refused: what it holds
    (the class torch named) and how to turn it into a file that loads safely."""
    m = _REFUSED_GLOBAL.search(str(exn))
    what = f"a pickled {m.group(1)} object" if m else "pickled objects other than tensors"
    return (f"refusing to load {path}: it holds {what}, and unpickling it could run arbitrary code. Convert it "
            "once, where you trust the file and have the code that saved it: save the tensors alone with "
            "torch.save(model.state_dict(), 'weights.pt') or safetensors.torch.save_file(model.state_dict(), "
            "'weights.safetensors'), and pass that file")


def check_finite_state(state: Dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise ``NonFiniteWeightsError`` naming ``source`` and the first tensors holding NaN/Inf."""
    bad = [(k, int((~torch.isfinite(state[k])).sum())) for k in non_finite_keys(state)]
    if bad:
        shown = ", ".join(f"{k} ({n} values)" for k, n in bad[:SHOW])
        raise NonFiniteWeightsError(
            f"{source} holds NaN/Inf weights in {len(bad)} tensor(s): {shown}. The run that saved them diverged; "
            "load an earlier checkpoint or export instead")


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a weights file into a ``{name: tensor}`` dict, refusing anything unsafe.

    The result is not cleaned yet: see ``clean_state_dict``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if not path.is_file():
        raise IsADirectoryError(f"{path} is not a file")
    if path.name.endswith(SAFETENSORS_SUFFIX):
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exn:
        msg = str(exn)
        if "weights only" in msg.lower() or "weights_only" in msg:
            raise UnsafeCheckpointError(refused_pickle_message(path, exn)) from exn
        raise ValueError(f"{path} is not a readable torch checkpoint: {msg.splitlines()[0][:300]}") from exn
    except Exception as exn:  # a truncated archive, random bytes …: never a crash without the file's name
        raise ValueError(f"{path} is not a readable torch checkpoint (truncated or corrupt?): "
                         f"{type(exn).__name__}: {str(exn)[:300]}") from exn
    return as_tensor_dict(obj, str(path))


def as_tensor_dict(obj, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """Return ``obj`` as a flat ``{str: Tensor}`` dict, unwrapping one level of nesting
    (``{"state_dict": {...}, "epoch": 3}``); anything else that is not a tensor is refused."""
    if not isinstance(obj, Mapping):
        raise UnsafeCheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict of tensors")
    if not _all_tensors(obj):
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                obj = inner
                break
    bad = [(k, type(v).__name__) for k, v in obj.items() if not isinstance(v, torch.Tensor) or not isinstance(k, str)]
    if bad:
        shown = ", ".join(f"{k!r} ({t})" for k, t in bad[:SHOW])
        raise UnsafeCheckpointError(
            f"{source} is not a plain state dict: {len(bad)} entries are not tensors, e.g. {shown}. "
            "Only files holding tensors alone (a state dict) are loaded")
    return dict(obj)


def _all_tensors(d: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def strip_prefixes(state: Dict[str, torch.Tensor], prefixes: Iterable[str] = STRIP_PREFIXES) -> Dict[str, torch.Tensor]:
    """Remove wrapper prefixes that *every* key shares, repeatedly (``module._orig_mod.x`` → ``x``)."""
    prefixes = tuple(prefixes)
    changed = True
    while changed and state:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def clean_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Strip wrapper prefixes and turn floating tensors (fp16/bf16/fp64) into contiguous fp32."""
    state = strip_prefixes(state)
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def describe_mismatch(model: nn.Module, state: Dict[str, torch.Tensor], source: str = "checkpoint") -> str:
    """An empty string when ``state`` fits ``model`` key for key and shape for shape, else a
    message naming the first missing, unexpected and mis-shaped keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state and not _optional(k)]
    unexpected = [k for k in state if k not in expected]
    shapes: List[Tuple[str, tuple, tuple]] = [
        (k, tuple(state[k].shape), expected[k])
        for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return ""
    parts = [f"the weights in {source} do not fit the {type(model).__name__} architecture"]
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): " + "; ".join(
            f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in shapes[:SHOW]))
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the checkpoint: " + ", ".join(
            f"{k} {list(expected[k])}" for k in missing[:SHOW]))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(
            f"{k} {list(state[k].shape)}" for k in unexpected[:SHOW]))
    return "; ".join(parts)


def _optional(key: str) -> bool:
    # BatchNorm's step counter does not change eval outputs; files saved without it still load.
    return key.endswith("num_batches_tracked")


def load_into(model: nn.Module, state: Dict[str, torch.Tensor], source: str = "checkpoint",
              assign: bool = False) -> nn.Module:
    """Load ``state`` into ``model`` strictly, raising ``StateDictMismatchError`` with a clear
    message when they differ (missing ``num_batches_tracked`` entries are tolerated).

    ``assign=True`` makes the model's parameters *be* the given tensors (for a model built on
    the meta device, whose storage is never initialised).
    """
    msg = describe_mismatch(model, state, source)
    if msg:
        raise StateDictMismatchError(msg)
    full = dict(state)
    for k, v in model.state_dict().items():
        if _optional(k) and k not in full:
            full[k] = torch.zeros((), dtype=torch.long) if v.is_meta else v
    model.load_state_dict(full, strict=True, assign=assign)
    return model
