"""The deployed-encoder folder written by ``unicom-export`` (``docs/formats.md``, "Deployed encoder").

``DIR/``:
  model.onnx            the ONNX graph (``--format onnx``); over 2 GB its weights go to
                        ``model.onnx.data`` beside it (ONNX external data)
  model.torchscript.pt  the TorchScript module (``--format torchscript``)
  preprocess.json       how an image becomes the graph's input, for a client in any language
  parity.json           the exported graph against the PyTorch encoder on a fixed batch
  deploy.json           the record (below); written last, so a folder with it is complete

``deploy.json`` fields:
  format "unicom-deploy", version 1
  graph_format   "onnx" or "torchscript"
  files          {file name: SHA-256 hex} of the graph file(s): the export's content identity
  sha256         the SHA-256 of the graph file (``files[graph]``)
  graph          the graph file's name
  opset          ONNX opset (null for TorchScript)
  dtype          "float32" or "float16": the precision of the graph's weights and arithmetic
  input          {"name", "shape": ["batch", 3, S, S], "dtype"}; output {"name", "shape": ["batch", D], "dtype"}
  image_size, mean, std, embed_dim (D, what the graph emits), normalized (L2 unit rows or raw)
  dims           null (the encoder's full embedding) or {"method": "first" | "pca", "dims": D,
                 "full_dim", ...} (PCA: the set it was fitted on, its size, the variance kept)
  encoder        the source encoder's record (``LoadedEncoder.describe()``) and the SHA-256 of its weights
  parity         the summary of parity.json
  software       versions of torch, onnx, onnxruntime at export time
Names, readers and writers only (no torch, no onnx).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Union

from .atomic_io import PathLike, read_json_record, write_json

DEPLOY_FORMAT = "unicom-deploy"
DEPLOY_VERSION = 1
RECORD_FILE = "deploy.json"
PREPROCESS_FILE = "preprocess.json"
PARITY_FILE = "parity.json"
GRAPH_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
ONNX_DATA_SUFFIX = ".data"          # model.onnx.data: the external weights of a graph over 2 GB
GRAPH_FORMATS = tuple(GRAPH_FILES)
_REQUIRED = ("graph_format", "graph", "sha256", "image_size", "mean", "std", "embed_dim", "normalized")


def is_deploy_dir(path: PathLike) -> bool:
    """True when ``path`` is a folder holding a deployed encoder's ``deploy.json``."""
    return (Path(path) / RECORD_FILE).is_file()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_record(directory: PathLike, record: Dict[str, Any]) -> Path:
    """Write ``directory/deploy.json`` atomically (format and version added); returns its path."""
    path = Path(directory) / RECORD_FILE
    write_json(path, {"format": DEPLOY_FORMAT, "version": DEPLOY_VERSION, **record})
    return path


def read_record(directory: PathLike, verify: bool = False) -> Dict[str, Any]:
    """Read and validate ``directory/deploy.json``; with ``verify`` also check every graph file
    against its recorded SHA-256. Errors name the file and what to do."""
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a deployed encoder folder is written by unicom-export")
    record = read_json_record(path, DEPLOY_FORMAT, "a unicom-export record", "export the encoder again")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{path} lacks the key {missing[0]!r}; export the encoder again")
    if record["graph_format"] not in GRAPH_FORMATS:
        raise ValueError(f"{path}: unknown graph_format {record['graph_format']!r} (known: {', '.join(GRAPH_FORMATS)})")
    graph = Path(directory) / record["graph"]
    if not graph.is_file():
        raise FileNotFoundError(f"{graph} not found next to {RECORD_FILE}; the export is incomplete")
    if verify:
        for name, digest in (record.get("files") or {record["graph"]: record["sha256"]}).items():
            if sha256_file(Path(directory) / name) != digest:
                raise ValueError(f"{Path(directory) / name} does not match the SHA-256 in {path}: the file changed "
                                 "after the export; export the encoder again")
    return record


def read_json(path: PathLike) -> Dict[str, Any]:
    """Read ``preprocess.json`` or ``parity.json`` (a JSON object); errors name the file."""
    try:
        obj: Union[Dict[str, Any], Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exn:
        raise ValueError(f"cannot read {path}: {exn}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return obj
