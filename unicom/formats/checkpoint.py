"""The training run folder and its checkpoints (``docs/formats.md``, "Training run").

``RUN/`` holds the files named below. A checkpoint ``RUN/checkpoints/step_N/`` holds

* ``backbone.safetensors``: the encoder's state dict, plain unprefixed keys;
* ``encoder.json``: the encoder record of an export's ``config.json`` (``unicom.formats.export``),
  so that ``unicom.load`` reads a step like an export;
* ``optimizer.pt``: the backbone optimizer's state dict (tensors, numbers and strings only, read
  with ``torch.load(weights_only=True)``);
* ``centres/``: the class centres and their optimizer state, one safetensors file per rank
  (``unicom.losses.centre_checkpoint``);
* ``state.json``: step, samples, schedule, RNG states, data position, counters.

Two definitions, one place:

* a step **holds an encoder** when ``encoder.json`` and ``backbone.safetensors`` are there (all
  that ``unicom.load`` needs);
* a step is **complete** when its ``state.json`` is there: the trainer writes it last, after its
  other files and after a collective that every rank reaches only once its centre shard is
  written, so ``state.json`` is the step's commit mark. ``checkpoints/latest`` is written after
  it and only ever names complete steps. A file can still be damaged later (a truncated copy);
  ``--resume`` finds that when it reads the step and falls back to the previous complete one.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .atomic_io import write_json, write_text

# The run folder
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.csv"
PLOT_FILE = "loss.png"
SUMMARY_FILE = "summary.json"
INPUTS_FILE = "inputs.json"
TENSORBOARD_DIR = "tensorboard"
EXPORT_DIR = "export"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"

# One checkpoint step
BACKBONE_FILE = "backbone.safetensors"
ENCODER_FILE = "encoder.json"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
CENTRES_DIR = "centres"
ENCODER_FILES = (ENCODER_FILE, BACKBONE_FILE)
COMMIT_FILE = STATE_FILE  # written last: its presence makes a step complete
BACKBONE_FORMAT = "unicom-train-backbone"
_STEP_RE = re.compile(r"^step_(\d+)$")


class RefusedPickleError(ValueError):
    """A ``.pt`` file holds Python objects that ``torch.load(weights_only=True)`` refuses."""


# --------------------------------------------------------------------------------------------
# Paths and what "complete" means
# --------------------------------------------------------------------------------------------
def checkpoint_root(run_dir) -> Path:
    """``RUN/checkpoints``."""
    return Path(run_dir) / CHECKPOINTS_DIR


def step_dir(run_dir, step: int) -> Path:
    """``RUN/checkpoints/step_N``."""
    return checkpoint_root(run_dir) / f"step_{int(step)}"


def step_of(path) -> Optional[int]:
    """N for a ``step_N`` folder name, else None."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def holds_encoder(step_path) -> bool:
    """True when the step has what ``unicom.load`` reads (``encoder.json`` + ``backbone.safetensors``)."""
    return all((Path(step_path) / name).is_file() for name in ENCODER_FILES)


def is_complete(step_path) -> bool:
    """True when the step's commit mark (``state.json``, written last) is there."""
    return (Path(step_path) / COMMIT_FILE).is_file()


def list_steps(checkpoints: Path) -> List[Tuple[int, Path]]:
    """``(N, path)`` of every ``step_N`` folder in ``checkpoints``, ascending."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return []
    return sorted((n, p) for p in checkpoints.iterdir() if (n := step_of(p)) is not None and p.is_dir())


def latest_name(checkpoints: Path) -> Optional[str]:
    """The step folder name written in ``checkpoints/latest``, or None without that file."""
    path = Path(checkpoints) / LATEST_FILE
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text:
        raise ValueError(f"{path} is empty; it should name the newest complete step directory")
    return text.splitlines()[0].strip()


def find_latest(run_dir) -> Optional[Path]:
    """The complete step that ``RUN/checkpoints/latest`` names; None when there is no ``latest``.
    Raises FileNotFoundError when it names a step that is not complete."""
    root = checkpoint_root(run_dir)
    name = latest_name(root)
    if name is None:
        return None
    d = root / name
    if step_of(name) is None or not is_complete(d):
        raise FileNotFoundError(f"{root / LATEST_FILE} names {name!r}, which is not a complete checkpoint dir "
                                f"(it has no {COMMIT_FILE}, which is written last)")
    return d


def complete_steps_before(run_dir, step: int) -> List[Path]:
    """The complete step folders older than ``step``, newest first (resume fallbacks)."""
    return [p for n, p in reversed(list_steps(checkpoint_root(run_dir))) if n < step and is_complete(p)]


def encoder_step_dir(checkpoints: Path) -> Path:
    """The step folder whose encoder ``unicom.load`` reads: the one ``checkpoints/latest``
    names; without that file, the highest step that holds an encoder (with a warning)."""
    checkpoints = Path(checkpoints)
    name = latest_name(checkpoints)
    if name is not None:
        candidates = [Path(name)] if Path(name).is_absolute() else [checkpoints / name, checkpoints.parent / name]
        for c in candidates:
            if holds_encoder(c):
                return c
        raise FileNotFoundError(f"{checkpoints / LATEST_FILE} names {name!r}, but {candidates[0]} holds no "
                                f"{' + '.join(ENCODER_FILES)} (an incomplete or deleted checkpoint)")
    found = [p for _, p in list_steps(checkpoints) if holds_encoder(p)]
    if not found:
        raise FileNotFoundError(f"{checkpoints} has no '{LATEST_FILE}' file and no step_N directory holding "
                                f"{' + '.join(ENCODER_FILES)}")
    warnings.warn(f"{checkpoints} has no '{LATEST_FILE}' file; using the highest complete step, {found[-1].name}",
                  stacklevel=2)
    return found[-1]


def is_checkpoint_area(path: Path) -> bool:
    """True when ``path`` looks like a ``checkpoints`` folder (a ``latest`` file or step folders)."""
    return (Path(path) / LATEST_FILE).is_file() or bool(list_steps(path))


# --------------------------------------------------------------------------------------------
# Readers and writers of one step's files (each write is atomic)
# --------------------------------------------------------------------------------------------
def write_latest(run_dir, step_path: Path) -> None:
    """Point ``checkpoints/latest`` at ``step_path`` (the last write of a checkpoint)."""
    write_text(checkpoint_root(run_dir) / LATEST_FILE, Path(step_path).name + "\n")


def write_backbone(step_path: Path, state: Dict[str, Any]) -> None:
    """``backbone.safetensors`` from a CPU state dict."""
    from safetensors.torch import save

    from .atomic_io import write_bytes

    write_bytes(Path(step_path) / BACKBONE_FILE, save(state, metadata={"format": BACKBONE_FORMAT}))


def read_backbone(step_path: Path) -> Dict[str, Any]:
    """The state dict in ``backbone.safetensors`` (no pickle involved)."""
    from safetensors.torch import load_file

    return load_file(str(Path(step_path) / BACKBONE_FILE))


def write_optimizer(step_path: Path, state: Dict[str, Any]) -> None:
    """``optimizer.pt``: an optimizer state dict of tensors, numbers and strings."""
    import io

    import torch

    from .atomic_io import write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(Path(step_path) / OPTIMIZER_FILE, buf.getvalue())


def read_optimizer(step_path: Path, map_location=None) -> Dict[str, Any]:
    """The optimizer state dict of ``optimizer.pt``, read with ``weights_only=True``."""
    return load_tensors_pt(Path(step_path) / OPTIMIZER_FILE, map_location)


def load_tensors_pt(path: Path, map_location=None) -> Any:
    """``torch.load(path, weights_only=True)``. A file holding other Python objects is refused
    with a one-line ``RefusedPickleError`` that names them and says how to convert the file."""
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exn:
        found = re.search(r"GLOBAL ([\w.]+)", str(exn))
        what = f"the object {found.group(1)}" if found else "a Python object other than tensors and numbers"
        raise RefusedPickleError(
            f"{path} holds {what}, which is not unpickled for safety. If you trust the file, "
            "convert it in a session of its own: load it, keep only tensors, numbers and strings (e.g. "
            "obj.state_dict()), and torch.save that, or save the tensors with safetensors") from None


def write_state(step_path: Path, state: Dict[str, Any]) -> None:
    """``state.json`` (strict JSON; non-finite floats become null)."""
    write_json(Path(step_path) / STATE_FILE, state)


def read_state(step_path: Path) -> Dict[str, Any]:
    """``state.json`` as a dict; a damaged file raises ValueError naming it."""
    path = Path(step_path) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except ValueError as exn:
        raise ValueError(f"{path} is not valid JSON ({exn}); the file is damaged") from None


def write_encoder(step_path: Path, record: Dict[str, Any]) -> None:
    """``encoder.json``: the export record (``unicom.formats.export.encoder_record``)."""
    write_json(Path(step_path) / ENCODER_FILE, record)


def centres_dir(step_path: Path) -> Path:
    """``step_N/centres``, the per-rank centre shards."""
    return Path(step_path) / CENTRES_DIR
