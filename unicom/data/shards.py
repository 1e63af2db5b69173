"""Shard lists: brace patterns, directories and list files, expanded to concrete paths."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, List, Sequence, Union

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def expand_braces(pattern: str) -> List[str]:
    """Expand shell-style braces: ``{00000..00012}`` (zero padding kept), ``{a,b}``,
    several groups and nesting, in order. ``{3..1}`` counts down. No braces: ``[pattern]``."""
    span = _first_group(pattern)
    if span is None:
        return [pattern]
    lo_i, hi_i = span
    head, body, tail = pattern[:lo_i], pattern[lo_i + 1:hi_i], pattern[hi_i + 1:]
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if rng:
        lo_s, hi_s = rng.groups()
        lo, hi = int(lo_s), int(hi_s)
        width = max(len(lo_s), len(hi_s)) if (lo_s.startswith("0") or hi_s.startswith("0")) else 0
        step = 1 if hi >= lo else -1
        items = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        items = _split_top_level(body)
    out: List[str] = []
    for item in items:
        for expanded in expand_braces(item):
            out.extend(expand_braces(head + expanded + tail))
    return out


def _first_group(s: str):
    """(start, end) indices of the first top-level ``{...}`` group, or None."""
    start, depth = s.find("{"), 0
    if start < 0:
        return None
    for i in range(start, len(s)):
        depth += {"{": 1, "}": -1}.get(s[i], 0)
        if depth == 0:
            return start, i
    raise ValueError(f"unbalanced braces in shard pattern {s!r}")


def _split_top_level(body: str) -> List[str]:
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    return parts


def is_shard_path(path: str) -> bool:
    return path.endswith(SHARD_SUFFIXES)


def expand_shards(spec: Union[str, Sequence[str]], must_exist: bool = True) -> List[str]:
    """Turn a shard specification into a list of shard paths.

    ``spec`` may be a brace pattern (``data/{00000..00099}.tar``), a directory (all its
    ``*.tar`` files, sorted), a list file (one path or pattern per line; ``#`` comments and
    blank lines ignored; relative paths are relative to the list file), a comma-free
    space-separated string, or a list of any of these. Remote URLs (``pipe:``, ``http(s)://``,
    ``s3://``, ``gs://``) pass through untouched. Raises FileNotFoundError naming the missing
    path, or ValueError when nothing is found.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: List[str] = []
    for s in specs:
        out.extend(_expand_one(str(s), must_exist))
    if not out:
        raise ValueError(f"no shards found in {spec!r}: give a brace pattern like "
                         "'data/{00000..00009}.tar', a directory of .tar files or a list file")
    return out


def _is_remote(s: str) -> bool:
    return s.startswith(("pipe:", "http://", "https://", "s3://", "gs://"))


def _expand_one(spec: str, must_exist: bool) -> List[str]:
    spec = spec.strip()
    if not spec:
        return []
    if _is_remote(spec):
        return expand_braces(spec)
    if os.path.isdir(spec):
        found = sorted(str(p) for p in Path(spec).iterdir() if is_shard_path(p.name))
        if not found:
            raise ValueError(f"directory {spec} holds no shard files ({', '.join(SHARD_SUFFIXES)})")
        return found
    if os.path.isfile(spec) and not is_shard_path(spec):
        return _read_list_file(spec, must_exist)
    paths = expand_braces(spec)
    if must_exist:
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"shard not found: {missing[0]}{more}; check the DATA path/pattern")
    return paths


def _read_list_file(path: str, must_exist: bool) -> List[str]:
    base = Path(path).parent
    out: List[str] = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _is_remote(line) and not os.path.isabs(line):
            line = str(base / line)
        out.extend(_expand_one(line, must_exist))
    return out


def shard_name(path: str) -> str:
    """Name a shard by its file name without the tar suffix: ``data/00012.tar`` → ``00012``.

    This is the key that joins features, labels and images across the pipeline.
    """
    name = os.path.basename(path.rstrip("/"))
    for suffix in SHARD_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def split_for_rank(items: Sequence, rank: int, world_size: int) -> list:
    """Round-robin share of ``items`` for ``rank``: every item goes to exactly one rank."""
    return list(items[rank::world_size])


def unique_names(paths: Iterable[str]) -> None:
    """Raise ValueError if two shards share a name (their outputs would overwrite each other)."""
    seen = {}
    for p in paths:
        n = shard_name(p)
        if n in seen:
            raise ValueError(f"two shards share the name {n!r}: {seen[n]} and {p}; "
                             "output files are keyed by shard name, so rename one")
        seen[n] = p
