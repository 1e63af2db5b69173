"""Per-rank checkpoints of the class centres and their optimizer state, loadable on any world size.

Every rank writes ``centres-RRRRR-of-WWWWW.safetensors`` into the checkpoint directory:

* tensors ``weight`` [C_rank·K, D] and, with an optimizer, its per-row state
  (``exp_avg``, ``exp_avg_sq``, ``row_step`` for AdamW; ``momentum_buffer`` for SGD);
* metadata (strings): ``format``, ``num_classes``, ``embed_dim``, ``subcenters``,
  ``class_start``, ``class_end``, ``rank``, ``world_size``, ``step``, ``seed``, ``optimizer``.

The file is a standard safetensors file, streamed to ``NAME.tmp`` in chunks (no second copy of
a multi-GB shard in memory), fsynced and renamed into place. Loading reads the metadata of all
shards, checks that they tile [0, C) exactly once, and copies just the rows of this rank's class
range out of whichever shards overlap it, so a run saved on 4 ranks resumes on 2 or on 1.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from ..formats.atomic_io import atomic_write

FORMAT = "unicom-partial-fc-centres/1"
_PATTERN = re.compile(r"^centres-(\d{5})-of-(\d{5})\.safetensors$")
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
_WRITE_CHUNK = 64 << 20


def shard_filename(rank: int, world_size: int) -> str:
    return f"centres-{rank:05d}-of-{world_size:05d}.safetensors"


def _write_safetensors(path: Path, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> None:
    """Write a safetensors file, streaming each tensor in chunks, atomically."""
    header: Dict[str, object] = {"__metadata__": metadata}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with atomic_write(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in names:
            flat = tensors[name].detach().contiguous().reshape(-1)
            per = max(1, _WRITE_CHUNK // max(1, flat.element_size()))
            for i in range(0, flat.numel(), per):
                piece = flat[i:i + per].cpu().contiguous().view(torch.uint8).numpy()
                f.write(memoryview(piece))


def save_centre_shard(directory, head, opt=None) -> Path:
    """Write this rank's centres (and ``opt``'s per-row state) into ``directory``; returns the
    file. Every rank calls it; no collective is involved."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": head.weight.detach()}
    kind = "none"
    if opt is not None:
        kind = opt.kind
        tensors.update({k: v.detach() for k, v in opt.centre_state(create=True).items()})
    meta = {"format": FORMAT, "num_classes": head.num_classes, "embed_dim": head.embed_dim,
            "subcenters": head.subcenters, "class_start": head.class_start, "class_end": head.class_end,
            "rank": head.rank, "world_size": head.world_size, "step": head.step, "seed": head.seed,
            "optimizer": kind}
    path = directory / shard_filename(head.rank, head.world_size)
    _write_safetensors(path, tensors, {k: str(v) for k, v in meta.items()})
    return path


def read_shard_index(directory) -> List[Tuple[Path, Dict[str, str]]]:
    """(path, metadata) of every centre shard in ``directory``, checked to form one complete set."""
    from safetensors import safe_open

    directory = Path(directory)
    paths = sorted(p for p in directory.glob("centres-*-of-*.safetensors") if _PATTERN.match(p.name))
    if not paths:
        raise FileNotFoundError(f"no centre shards (centres-*-of-*.safetensors) in {directory}")
    found = []
    for p in paths:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{p} is not a centre shard of this toolkit (format {meta.get('format')!r})")
        found.append((p, meta))
    worlds = {int(m["world_size"]) for _, m in found}
    if len(worlds) != 1:
        raise ValueError(f"{directory} mixes centre shards of world sizes {sorted(worlds)}")
    world_size = worlds.pop()
    ranks = sorted(int(m["rank"]) for _, m in found)
    if ranks != list(range(world_size)):
        raise ValueError(f"{directory}: expected the shards of ranks 0..{world_size - 1}, found ranks {ranks}")
    found.sort(key=lambda pm: int(pm[1]["class_start"]))
    expect = 0
    for p, m in found:
        if int(m["class_start"]) != expect:
            raise ValueError(f"{directory}: shard {p.name} starts at class {m['class_start']}, expected {expect}")
        expect = int(m["class_end"])
    for key in ("num_classes", "embed_dim", "subcenters", "step"):
        values = {m[key] for _, m in found}
        if len(values) != 1:
            raise ValueError(f"{directory}: shards disagree on {key}: {sorted(values)}")
    if expect != int(found[0][1]["num_classes"]):
        raise ValueError(f"{directory}: shards cover classes [0, {expect}) of {found[0][1]['num_classes']}")
    return found


def load_centre_shards(directory, head, opt=None, strict: bool = True) -> Dict[str, int]:
    """Fill ``head`` (and ``opt``'s per-row state) with this rank's class range from the shards
    in ``directory``, whatever world size wrote them; restore the head's step counter.

    With ``strict``, an optimizer whose state is missing from the shards (or of another kind)
    is an error; otherwise its state is left at zero. Returns the saved step and world size.
    """
    from safetensors import safe_open

    found = read_shard_index(directory)
    meta0 = found[0][1]
    for key, mine in (("num_classes", head.num_classes), ("embed_dim", head.embed_dim),
                      ("subcenters", head.subcenters)):
        if int(meta0[key]) != int(mine):
            raise ValueError(f"centre shards in {directory} have {key}={meta0[key]}, the head has {mine}")
    state = None
    if opt is not None:
        saved_kind = meta0.get("optimizer", "none")
        if saved_kind != opt.kind:
            if strict:
                raise ValueError(f"centre shards in {directory} hold {saved_kind!r} optimizer state; the optimizer "
                                 f"is {opt.kind!r} (pass strict=False to start its state from zero)")
        else:
            state = opt.centre_state(create=True)
    K = head.subcenters
    with torch.no_grad():
        for path, meta in found:
            s0, s1 = int(meta["class_start"]), int(meta["class_end"])
            lo, hi = max(s0, head.class_start), min(s1, head.class_end)
            if lo >= hi:
                continue
            src = slice((lo - s0) * K, (hi - s0) * K)
            dst = slice((lo - head.class_start) * K, (hi - head.class_start) * K)
            with safe_open(str(path), framework="pt", device="cpu") as f:
                head.weight[dst].copy_(f.get_slice("weight")[src])
                if state is not None:
                    names = set(f.keys())
                    for name, t in state.items():
                        if name not in names:
                            if strict:
                                raise ValueError(f"{path} lacks optimizer state {name!r}")
                            continue
                        t[dst].copy_(f.get_slice(name)[src])
    head.step = int(meta0["step"])
    return {"step": head.step, "world_size": int(meta0["world_size"])}
