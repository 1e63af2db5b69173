"""Read LAION-style webdataset shards, skipping bad samples and counting them by reason.

A corrupt image, a missing caption or a truncated tar never stops a job (docs/formats.md): the
reader yields a ``Skipped`` record in place of the sample, so the count survives DataLoader
worker processes (the skips travel with the batches) and can be summed across ranks. A key that
occurs twice in a shard is used once: the second occurrence is skipped as ``duplicate_key``.
"""
from __future__ import annotations

import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import webdataset as wds
from PIL import Image

from .decode import DecodePolicy, decode
from .images import skip_reason
from .shards import shard_name

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXT = "txt"
META_EXT = "json"
SKIP_REASONS = ("bad_image", "missing_image", "missing_caption", "no_label", "truncated_tar", "unreadable_shard",
                "duplicate_key", "too_large")
# webdataset's error for a file whose key and extension repeat those of the file before it
_DUPLICATE_FILE = ": duplicate file name in tar file"


@dataclass
class Sample:
    """One good sample: ``image`` is a fully decoded RGB PIL image under the decode policy
    (``unicom.data.decode``; or the raw bytes when decoding was not asked for); ``caption`` is None when not required and absent."""

    key: str
    shard: str
    image: Any
    caption: Optional[str]
    meta: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Skipped:
    """A sample (or the rest of a shard) that could not be used, and why."""

    reason: str
    shard: str
    key: Optional[str] = None
    detail: str = ""


class SkipCounter:
    """Counts skipped samples by reason, keeping a few examples of each for the report."""

    def __init__(self, counts: Optional[Dict[str, int]] = None):
        self.counts: Counter = Counter(counts or {})
        self.examples: Dict[str, List[str]] = {}

    def add(self, skip: Union[Skipped, str], n: int = 1) -> None:
        """Count one ``Skipped`` record (or ``n`` of a bare reason string)."""
        if isinstance(skip, Skipped):
            self.counts[skip.reason] += 1
            ex = self.examples.setdefault(skip.reason, [])
            if len(ex) < 3:
                ex.append(f"{skip.shard}/{skip.key or '?'}" + (f": {skip.detail}" if skip.detail else ""))
        else:
            self.counts[skip] += n

    def update(self, other: Union["SkipCounter", Dict[str, int], Iterable[Skipped]]) -> None:
        """Add another counter, a {reason: n} dict, or an iterable of ``Skipped`` records."""
        if isinstance(other, SkipCounter):
            self.counts.update(other.counts)
            for r, ex in other.examples.items():
                self.examples.setdefault(r, []).extend(ex[: max(0, 3 - len(self.examples.get(r, [])))])
        elif isinstance(other, dict):
            self.counts.update(other)
        else:
            for s in other:
                self.add(s)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> Dict[str, int]:
        return dict(sorted(self.counts.items()))

    def all_reduce(self) -> "SkipCounter":
        """Return a counter summed over all ranks (this process's counter without a group)."""
        from ..runtime.distributed import all_gather_object

        out = SkipCounter()
        for counts in all_gather_object(self.as_dict()):
            out.update(counts)
        return out

    def report(self, title: str = "skipped samples") -> str:
        """A small printable table: one row per reason, then the total."""
        if not self.counts:
            return f"{title}: none"
        width = max(len(r) for r in self.counts) + 2
        lines = [f"{title}:"]
        for reason, n in sorted(self.counts.items()):
            ex = self.examples.get(reason)
            lines.append(f"  {reason:<{width}}{n:>8}" + (f"   e.g. {ex[0]}" if ex else ""))
        lines.append(f"  {'total':<{width}}{self.total:>8}")
        return "\n".join(lines)


def _classify_stream_error(exn: BaseException) -> str:
    if isinstance(exn, (tarfile.ReadError, EOFError)) or "unexpected end" in str(exn).lower():
        return "truncated_tar"
    return "unreadable_shard"


def _duplicate_file_key(exn: BaseException) -> Optional[Tuple[str, str]]:
    """(key, extension) when ``exn`` is webdataset's duplicate-file error, else None."""
    msg = str(exn.args[0]) if exn.args else ""
    if _DUPLICATE_FILE not in msg:
        return None
    fname = msg.split(_DUPLICATE_FILE)[0]
    key, ext = wds.tariterators.base_plus_ext(fname)
    return (key, ext) if key is not None else None


def iter_raw(shards: Sequence[str]) -> Iterator[Union[Dict[str, Any], Skipped]]:
    """Yield webdataset's raw sample dicts (``__key__``, ``__url__``, one bytes entry per
    extension) from ``shards`` in order, or a ``Skipped`` where a shard is truncated or
    cannot be opened; reading then moves on to the next shard.

    A key met a second time in a shard is a ``Skipped("duplicate_key")``: the first sample with
    a key is the one every reader (clustering, training, embedding) uses."""
    for shard in shards:
        name = shard_name(shard)
        errors: List[BaseException] = []
        # files repeating the previous file's key and extension (a.jpg a.txt a.jpg …): webdataset
        # keeps the first of each and reports the rest; count the repeats per key and extension
        repeats: Dict[str, Counter] = {}
        seen: set = set()

        def handler(exn: BaseException, repeats=repeats, errors=errors) -> bool:  # bound to this shard's
            dup = _duplicate_file_key(exn)
            if dup is not None:
                repeats.setdefault(dup[0], Counter())[dup[1]] += 1
            else:
                errors.append(exn)
            return True

        # webdataset reports one broken stream at two levels (tar member, then url):
        # only the first error of a shard is a skip; the rest of the shard is gone with it.
        for raw in wds.tarfile_samples([{"url": shard}], handler=handler):
            key = raw.get("__key__")
            if key in seen:
                yield Skipped("duplicate_key", name, key, "a second sample with this key in the shard")
            else:
                seen.add(key)
                yield raw
            yield from _repeat_skips(repeats, name)
        yield from _repeat_skips(repeats, name)
        if errors:
            exn = errors[0]
            yield Skipped(_classify_stream_error(exn), shard_name(shard),
                          detail=f"{type(exn).__name__}: {str(exn)[:120]}")


def _repeat_skips(repeats: Dict[str, Counter], shard: str) -> Iterator[Skipped]:
    """One ``duplicate_key`` skip per repeated sample counted in ``repeats`` (then emptied)."""
    for key, per_ext in repeats.items():
        for _ in range(max(per_ext.values())):
            yield Skipped("duplicate_key", shard, key, "a second sample with this key in the shard")
    repeats.clear()


def image_members(tar_path: str) -> Dict[str, tarfile.TarInfo]:
    """key → the ``TarInfo`` of its image (the first of its image members), for one shard, to
    read single images back by key without a pass of the webdataset reader. A truncated shard
    still gives the members before the cut; an unreadable one gives none."""
    members: Dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(tar_path) as tf:
            for m in tf:
                base, _, ext = m.name.rpartition(".")
                if m.isfile() and ext.lower() in IMAGE_EXTS:
                    members.setdefault(base, m)
    except (tarfile.TarError, OSError, EOFError):
        pass
    return members


def decode_image(data: bytes, policy: Optional[DecodePolicy] = None) -> Image.Image:
    """Decode a shard member's bytes fully (so truncation is caught here, not later) into RGB
    under ``policy`` (default: the process's): ``unicom.data.decode.decode``."""
    return decode(data, policy)


def to_sample(raw: Dict[str, Any], need_image: bool = True, need_caption: bool = False,
              decode: bool = True, policy: Optional[DecodePolicy] = None) -> Union[Sample, Skipped]:
    """Turn a raw webdataset dict into a ``Sample``, or a ``Skipped`` naming what is wrong;
    the image is decoded under ``policy`` (default: the process's)."""
    key, shard = raw.get("__key__", "?"), shard_name(raw.get("__url__", "?"))
    img_ext = next((e for e in IMAGE_EXTS if e in raw), None)
    image = None
    if need_image:
        if img_ext is None:
            return Skipped("missing_image", shard, key)
        image = raw[img_ext]
        if decode:
            try:
                image = decode_image(image, policy)
            except Exception as exn:  # any decoder failure is a bad (or too large) image, never fatal
                return Skipped(skip_reason(exn), shard, key, f"{type(exn).__name__}: {str(exn)[:80]}")
    caption = None
    if CAPTION_EXT in raw:
        caption = raw[CAPTION_EXT].decode("utf-8", errors="replace").strip()
    if need_caption and not caption:
        return Skipped("missing_caption", shard, key)
    meta: Dict[str, Any] = {}
    if META_EXT in raw:
        try:
            meta = json.loads(raw[META_EXT])
        except (ValueError, UnicodeDecodeError):
            meta = {}  # metadata is optional: a broken json does not cost the sample
    return Sample(key=key, shard=shard, image=image, caption=caption, meta=meta)


def iter_samples(shards: Sequence[str], need_image: bool = True, need_caption: bool = False,
                 decode: bool = True, policy: Optional[DecodePolicy] = None) -> Iterator[Union[Sample, Skipped]]:
    """Yield ``Sample`` or ``Skipped`` for every sample of ``shards``, in shard order (images
    decoded under ``policy``, default: the process's)."""
    for raw in iter_raw(shards):
        yield raw if isinstance(raw, Skipped) else to_sample(raw, need_image, need_caption, decode, policy)


def read_shard_samples(shards: Sequence[str], counter: Optional[SkipCounter] = None, **kwargs) -> List[Sample]:
    """Read all good samples of ``shards`` into a list, counting skips into ``counter``."""
    out = []
    for item in iter_samples(shards, **kwargs):
        if isinstance(item, Skipped):
            if counter is not None:
                counter.add(item)
        else:
            out.append(item)
    return out


def split_skips(items: Sequence[Any]) -> Tuple[List[Any], List[Skipped]]:
    """Separate a list (e.g. a DataLoader batch before collation) into (good items, skips)."""
    good, skips = [], []
    for it in items:
        (skips if isinstance(it, Skipped) else good).append(it)
    return good, skips
