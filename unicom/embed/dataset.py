"""Inputs of ``unicom-embed``: an image folder, a list file of images, or webdataset shards.

* A **folder** is scanned recursively for images (sorted); keys are the paths relative to it.
* A **list file** holds one image path per line (``#`` comments and blank lines ignored);
  relative paths are relative to the list file, and the keys are the paths as written.
* **Shards** are anything ``unicom.data.shards.expand_shards`` accepts (brace pattern, directory of
  ``.tar`` files, list file of shards); keys are the samples' ``__key__``.

Folder and list inputs form one pseudo-shard (``images`` unless named otherwise). A file that
cannot be decoded, and a corrupt or truncated sample of a shard, is skipped and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..data.decode import current_policy
from ..data.images import open_image
from ..data.shards import expand_shards, is_shard_path, shard_name, unique_names
from ..data.wds_reader import Skipped, iter_samples
from ..datasets.base import IMAGE_EXTENSIONS
from .options import DEFAULT_NAME, INPUT_TYPES, default_workers  # noqa: F401  (re-exported)

IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # the toolkit's one list of image file extensions


def is_image_path(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def _first_entry(list_file: Path) -> Optional[str]:
    with open(list_file, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line
    return None


def detect_input_type(spec: str) -> str:
    """Guess whether ``spec`` is a folder of images, a list file of images or shards."""
    p = Path(spec).expanduser()
    if p.is_dir():
        has_shards = any(is_shard_path(c.name) for c in p.iterdir() if c.is_file())
        return "shards" if has_shards else "folder"
    if "{" in spec or is_shard_path(spec) or spec.startswith(("pipe:", "http://", "https://", "s3://", "gs://")):
        return "shards"
    if p.is_file():
        first = _first_entry(p)
        return "shards" if first is not None and is_shard_path(first) else "list"
    raise FileNotFoundError(f"input not found: {spec}; give an image folder, a list file or shards "
                            "(a brace pattern like 'data/{00000..00009}.tar' or a directory of .tar files)")


@dataclass
class ImageFiles:
    """A pseudo-shard of image files: ``paths[i]`` is read and stored under ``keys[i]``."""

    name: str
    root: Path
    keys: List[str]
    paths: List[Path]
    kind: str = "files"

    @property
    def source(self) -> str:
        return str(self.root)


def list_folder(root, name: str = DEFAULT_NAME) -> ImageFiles:
    """All images under ``root`` (recursively, sorted by relative path)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    # a symlink that leads nowhere (a loop, a dangling link) stays listed: reading it fails and is
    # counted as a skipped image, instead of vanishing from the counts
    keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if is_image_path(p.name) and (p.is_file() or (p.is_symlink() and not p.is_dir())))
    if not keys:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return ImageFiles(name, root, keys, [root / k for k in keys])


def read_image_list(list_file, name: str = DEFAULT_NAME) -> ImageFiles:
    """The images named in ``list_file``; missing files are an error naming the first ones."""
    list_file = Path(list_file).expanduser().resolve()
    root = list_file.parent
    lines = (line.strip() for line in list_file.read_text(encoding="utf-8").splitlines())
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise ValueError(f"{list_file} lists no images")
    paths = [root / Path(k).expanduser() for k in keys]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{list_file} lists a missing image: {missing[0]}{more}")
    return ImageFiles(name, root, keys, paths)


def resolve_input(spec: str, input_type: str = "auto", name: str = DEFAULT_NAME):
    """Return ("files", ImageFiles) or ("shards", [shard paths])."""
    if input_type not in INPUT_TYPES:
        raise ValueError(f"unknown input type {input_type!r}; choose from {', '.join(INPUT_TYPES)}")
    kind = detect_input_type(spec) if input_type == "auto" else input_type
    if kind == "folder":
        return "files", list_folder(spec, name)
    if kind == "list":
        return "files", read_image_list(spec, name)
    shards = expand_shards(spec)
    unique_names(shards)
    return "shards", shards


class ImageFileDataset(Dataset):
    """Map-style dataset over ``ImageFiles``: item i is (tensor or None, i, error text)."""

    def __init__(self, files: ImageFiles, transform: Callable):
        self.files, self.transform = files, transform
        self.policy = current_policy()  # captured here: workers decode under it whatever their start method

    def __len__(self) -> int:
        return len(self.files.paths)

    def __getitem__(self, i: int):
        try:
            return self.transform(open_image(self.files.paths[i], policy=self.policy)), i, ""
        except Exception as exn:  # a bad file is skipped and counted, never fatal
            return None, i, f"{type(exn).__name__}: {str(exn)[:80]}"


@dataclass
class FileBatch:
    images: Optional[torch.Tensor]
    indices: List[int]
    skips: List[Skipped] = field(default_factory=list)


def collate_files(items, name: str = DEFAULT_NAME, keys: Optional[Sequence[str]] = None) -> FileBatch:
    good = [(t, i) for t, i, _ in items if t is not None]
    skips = [Skipped("bad_image", name, keys[i] if keys else str(i), err) for t, i, err in items if t is None]
    images = torch.stack([t for t, _ in good]) if good else None
    return FileBatch(images, [i for _, i in good], skips)


class FileCollate:
    """Picklable collate function for DataLoader workers."""

    def __init__(self, files: ImageFiles):
        self.name, self.keys = files.name, files.keys

    def __call__(self, items) -> FileBatch:
        return collate_files(items, self.name, self.keys)


@dataclass
class ShardBatch:
    """A batch of one shard's samples; ``last`` marks the shard's final batch."""

    shard: str
    keys: List[str]
    images: Optional[torch.Tensor]
    skips: List[Skipped]
    last: bool


class ShardBatches(IterableDataset):
    """Whole shards per DataLoader worker, decoded, transformed and batched in the worker.

    Use with ``DataLoader(batch_size=None, collate_fn=identity)``. Every shard ends with a
    batch flagged ``last`` (possibly empty), so the consumer knows when to write it.
    """

    def __init__(self, shards: Sequence[str], transform: Callable, batch_size: int):
        self.shards, self.transform, self.batch_size = list(shards), transform, int(batch_size)
        self.policy = current_policy()  # the decode policy, carried into the workers

    def __iter__(self) -> Iterator[ShardBatch]:
        info = get_worker_info()
        mine = self.shards if info is None else self.shards[info.id::info.num_workers]
        for shard in mine:
            yield from self._one_shard(shard)

    def _one_shard(self, shard: str) -> Iterator[ShardBatch]:
        name = shard_name(shard)
        keys: List[str] = []
        tensors: List[torch.Tensor] = []
        skips: List[Skipped] = []
        for item in iter_samples([shard], need_image=True, need_caption=False, policy=self.policy):
            if isinstance(item, Skipped):
                skips.append(item)
                continue
            try:
                tensors.append(self.transform(item.image))
                keys.append(item.key)
            except Exception as exn:  # a transform failure is a bad image, never fatal
                skips.append(Skipped("bad_image", name, item.key, f"{type(exn).__name__}: {str(exn)[:80]}"))
            if len(tensors) == self.batch_size:
                yield ShardBatch(name, keys, torch.stack(tensors), skips, last=False)
                keys, tensors, skips = [], [], []
        yield ShardBatch(name, keys, torch.stack(tensors) if tensors else None, skips, last=True)


def identity(x):
    return x


def read_list_or_folder(spec: str) -> List[Path]:
    """Images of one query spec: an image file, a folder (recursive) or a list file."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return list_folder(p).paths
    if p.is_file() and is_image_path(p.name):
        return [p]
    if p.is_file():
        return read_image_list(p).paths
    raise FileNotFoundError(f"query not found: {spec}")


def query_paths(specs: Sequence[str]) -> List[Path]:
    """Expand query specs (image files, folders, list files) into image paths, in order."""
    paths: List[Path] = []
    for s in specs:
        paths.extend(read_list_or_folder(s))
    return paths
