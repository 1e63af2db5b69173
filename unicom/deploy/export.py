"""``unicom.export_model``: an encoder → a deployable folder (``unicom.formats.deploy``).

Order of work: every argument is checked first (formats, sizes, the runtime being installed,
the output folder), then the encoder is loaded on the CPU in float32, the compact head fitted,
the graph written and run on the parity batch. ``deploy.json`` is written last and only when
the parity check passes, so a folder that ``--model`` accepts always holds a checked graph;
a failed check leaves the graph and ``parity.json`` for inspection.
"""
from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..formats import deploy as fmt
from ..formats.atomic_io import write_json
from .compact import CompactHead, check_dims, first_dims_head, pca_head
from .head import DeployHead, encode_method
from .options import DEFAULT_OPSET, DEFAULT_PARITY_IMAGES, GRAPH_FORMATS
from .parity import MIN_COSINE, TOP_K, ParityError, ParityReport, compare, run_batches, transform_batch
from .parity import parity_images as parity_batch
from .preprocess import preprocess_record
from .runtime import MissingRuntimeError

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """The written folder, its ``deploy.json`` record and the parity figures."""

    directory: Path
    record: Dict[str, Any]
    parity: ParityReport

    @property
    def graph(self) -> Path:
        return self.directory / self.record["graph"]


def check_runtime(graph_format: str) -> None:
    """Fail at once, with the install line, when the ONNX tools are missing (ImportError)."""
    if graph_format != "onnx":
        return
    missing = []
    for mod in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise MissingRuntimeError(f"exporting to ONNX needs {', '.join(missing)}: pip install 'unicom-toolkit[onnx]'")


def check_output(output: Path) -> None:
    """The output may be new, empty, or an earlier export (replaced); anything else is refused."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file; name a folder")
    if output.is_dir() and not fmt.is_deploy_dir(output):
        known = set(fmt.GRAPH_FILES.values()) | {fmt.PARITY_FILE, fmt.PREPROCESS_FILE}
        known |= {n + fmt.ONNX_DATA_SUFFIX for n in known}
        # hidden files are the command's own lock (unicom.cli.run_lock) and temporary files
        if any(not p.name.startswith(".") and p.name not in known for p in output.iterdir()):
            raise ValueError(f"--output {output} holds other files; name a new or empty folder")


def export_model(model: Any, output: Union[str, "os.PathLike[str]"], format: str = "onnx", *,
                 image_size: Optional[int] = None, heads: Optional[int] = None, fp16: bool = False,
                 normalize: bool = True, dims: Optional[int] = None, pca_fit: Optional[str] = None,
                 parity_data: Optional[str] = None, parity_images: int = DEFAULT_PARITY_IMAGES,
                 min_cosine: Optional[float] = None, opset: int = DEFAULT_OPSET, batch_size: int = 32,
                 workers: int = 0, progress: bool = True) -> ExportResult:
    """Export ``model`` (anything ``unicom.load`` accepts, or a ``LoadedEncoder``, whose model is
    moved to the CPU in float32 for the export) to ``output``
    as an ONNX graph or a TorchScript module taking normalised images [batch, 3, S, S]
    (float32, any batch) and returning embeddings [batch, D] (float32, L2-normalised unless
    ``normalize=False``). See ``unicom-export --help`` for each argument. Raises ValueError /
    ImportError / ``ExportError`` for bad input (one line) and ``ParityError`` when the graph
    does not reproduce the encoder."""
    out = Path(output).expanduser()
    dtype = "float16" if fp16 else "float32"
    threshold = float(MIN_COSINE[dtype] if min_cosine is None else min_cosine)
    _check_args(format, fp16, opset, dims, pca_fit, parity_images)
    check_runtime(format)
    check_output(out)
    if isinstance(model, (str, os.PathLike)):  # a released name is checked before its download
        check_dims(dims, recorded_embed_dim(os.fspath(model)), os.fspath(model))
    images, described = parity_batch(parity_data, parity_images)

    enc = _load(model, image_size, heads)
    check_dims(dims, enc.embed_dim, enc.source)
    compact: Optional[CompactHead] = None
    if dims is not None:
        compact = (pca_head(enc, dims, pca_fit, batch_size, workers, progress) if pca_fit
                   else first_dims_head(dims, enc.embed_dim))
    head = DeployHead(enc.model, encode_method(enc.model, enc.encode), normalize,
                      first=compact.dims if compact and compact.method == "first" else None,
                      pca_mean=compact.mean if compact else None,
                      pca_components=compact.components if compact else None).eval()
    x = transform_batch(images, enc.transform)
    reference = run_batches(head, x, batch_size)

    out.mkdir(parents=True, exist_ok=True)
    (out / fmt.RECORD_FILE).unlink(missing_ok=True)  # the folder is not a usable export until the new record
    files = _write_graph(format, head, x[:2], out, opset, fp16)
    graph = fmt.GRAPH_FILES[format]
    record: Dict[str, Any] = {
        "graph_format": format, "graph": graph, "sha256": files[graph], "files": files,
        "opset": int(opset) if format == "onnx" else None, "dtype": dtype,
        "input": {"name": "images", "shape": ["batch", 3, enc.image_size, enc.image_size], "dtype": "float32"},
        "output": {"name": "embeddings", "shape": ["batch", reference.shape[1]], "dtype": "float32"},
        "image_size": int(enc.image_size), "mean": list(enc.mean), "std": list(enc.std),
        "embed_dim": int(reference.shape[1]), "normalized": bool(normalize),
        "dims": compact.describe() if compact else None, "encoder": _encoder_record(enc),
        "software": _versions(format)}

    from .runtime import load_graph

    exported = run_batches(load_graph(out, record, "cpu"), x, batch_size)
    report = compare(reference, exported, threshold, described)
    write_json(out / fmt.PARITY_FILE, {**report.to_dict(), "dtype": dtype, "graph_sha256": files[graph]})
    if not report.passed:
        raise ParityError(f"the exported graph does not reproduce the encoder: {report.line()}; see "
                          f"{out / fmt.PARITY_FILE}" + ("" if fp16 else "; report this encoder as a bug"))
    write_json(out / fmt.PREPROCESS_FILE, preprocess_record(enc.image_size, enc.mean, enc.std))
    record["parity"] = {k: getattr(report, k) for k in ("n", "min_cosine", "max_abs_diff", "top10_agreement",
                                                       "threshold")}
    fmt.write_record(out, record)
    return ExportResult(out, fmt.read_record(out), report)


def _check_args(graph_format: str, fp16: bool, opset: int, dims: Optional[int], pca_fit: Optional[str],
                n: int) -> None:
    if graph_format not in GRAPH_FORMATS:
        raise ValueError(f"unknown --format {graph_format!r}; choose from {', '.join(GRAPH_FORMATS)}")
    if fp16 and graph_format != "onnx":
        raise ValueError("--fp16 makes a half-precision ONNX graph; for TorchScript leave it out and run the module "
                         "under torch.autocast")
    if graph_format == "onnx" and int(opset) < 18:
        raise ValueError(f"--opset {opset} is too old for the exporter; use 18 or later")
    if pca_fit is not None and dims is None:
        raise ValueError("--pca-fit fits the projection of --dims D: give --dims too")
    if pca_fit is not None and not (Path(pca_fit).exists() or "{" in pca_fit):
        raise FileNotFoundError(f"--pca-fit {pca_fit}: no such folder, list file or shards")
    if int(n) <= TOP_K:
        raise ValueError(f"--parity-images {n}: the parity check needs more than {TOP_K} images")


def recorded_embed_dim(source: str) -> int:
    """The embedding size of a released name or an encoder folder, read without loading (or
    downloading) weights; 0 when only the weights can tell."""
    from ..models.vit import OFFICIAL_CONFIGS
    from ..pretrained.load import read_dir_record, resolve_source
    from ..pretrained.registry import get_spec, is_known_name

    if is_known_name(source):
        return OFFICIAL_CONFIGS[get_spec(source).arch].embed_dim
    if not Path(source).expanduser().is_dir():
        return 0
    try:
        kind, path = resolve_source(source)
        return int(read_dir_record(kind, path)[0]["embed_dim"]) if kind in ("export", "checkpoint") else 0
    except (OSError, ValueError, KeyError):
        return 0  # the load itself reports what is wrong


def _load(model: Any, image_size: Optional[int], heads: Optional[int]):
    from ..models.encoders import as_encoder
    from ..pretrained.load import LoadedEncoder, load_encoder

    if isinstance(model, LoadedEncoder):
        enc = model
        if image_size is not None and int(image_size) != enc.image_size:
            raise ValueError(f"image_size {image_size} differs from the loaded encoder's {enc.image_size}; pass the "
                             "encoder's name or path to resize it")
    elif isinstance(model, (str, os.PathLike)):
        enc = load_encoder(model, device="cpu", image_size=image_size, heads=heads)
    else:
        enc = as_encoder(model, device="cpu")
    if enc.kind in fmt.GRAPH_FORMATS:
        raise ValueError(f"{enc.source} is already an exported graph; export the encoder it came from "
                         f"({enc.extra.get('exported_from')})")
    if not enc.image_size:
        raise ValueError(f"{enc.source}: the encoder's input size is unknown; give image_size")
    enc.model.to("cpu", torch.float32).eval()  # the export and the reference run in float32 on the CPU
    return enc


def _write_graph(graph_format: str, head: DeployHead, example: torch.Tensor, out: Path, opset: int,
                 fp16: bool) -> Dict[str, str]:
    from .graph import export_onnx, export_torchscript

    if graph_format == "onnx":
        return export_onnx(head, example, out, opset, fp16)
    return export_torchscript(head, example, out)


def _encoder_record(enc) -> Dict[str, Any]:
    from ..embed.embedder import portable_source

    rec = dict(enc.describe(), model=portable_source(enc.source))
    weights = Path(enc.weights)
    rec["weights_sha256"] = fmt.sha256_file(weights) if weights.is_file() else None
    return rec


def _versions(graph_format: str) -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {"torch": torch.__version__, "python": platform.python_version()}
    if graph_format == "onnx":
        import onnx
        import onnxruntime

        out.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return out
