"""Run an exported encoder: an ONNX graph through onnxruntime, a TorchScript module through
``torch.jit.load``, each as an ``nn.Module`` mapping normalised images [B, 3, S, S] (torch) to
embeddings [B, D] (torch float32).

``deployed_encoder_fields(dir)`` gives what ``unicom.pretrained.load.load_encoder`` needs to
build a ``LoadedEncoder`` from a ``unicom-export`` folder, so that every command that takes
``--model`` (unicom-embed, unicom-search, the search service) runs an export unchanged.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from ..data.transforms import eval_transform
from ..formats import deploy as fmt
from ..runtime.device import resolve_device

ONNX_HINT = "pip install 'unicom-toolkit[onnx]' (or pip install onnxruntime)"


class MissingRuntimeError(ImportError, RuntimeError):
    """onnxruntime is not installed (a RuntimeError too, so every command reports it in one line)."""


def import_onnxruntime():
    """The ``onnxruntime`` module, or a one-line ``MissingRuntimeError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingRuntimeError(f"running an ONNX export needs onnxruntime: {ONNX_HINT}") from None
    return onnxruntime


def onnx_providers(device: torch.device) -> List[str]:
    """onnxruntime execution providers for ``device``: CUDA first when asked for and installed
    (``onnxruntime-gpu``), the CPU always as the fallback."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModule(nn.Module):
    """An ONNX graph as a module: ``forward(images)`` runs the onnxruntime session.

    Images arrive as a torch tensor [B, 3, S, S] (any float dtype, any device) and are handed
    to the session as numpy in the graph's input dtype; the output comes back as a float32
    CPU tensor [B, D]. The module has no parameters, so ``LoadedEncoder.device`` is the CPU and
    callers keep the batch there."""

    def __init__(self, path: Union[str, Path], providers: Optional[List[str]] = None, threads: Optional[int] = None,
                 half: bool = False):
        super().__init__()
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        if half:
            # onnxruntime's layout optimisations (level "all") crash on float16 convolutions on the
            # CPU; "extended" keeps the operator fusions
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exn:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"onnxruntime cannot load {path}: {str(exn).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.path = str(path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def extra_repr(self) -> str:
        return f"path={self.path!r}, providers={self.session.get_providers()}"


def load_graph(directory: Union[str, Path], record: Dict[str, Any], device: Optional[Union[str, torch.device]] = None,
               threads: Optional[int] = None) -> nn.Module:
    """The exported graph of ``directory`` as a module (ONNX: onnxruntime; TorchScript:
    ``torch.jit.load`` onto ``device``), in eval mode."""
    dev = resolve_device(device)
    path = Path(directory) / record["graph"]
    if record["graph_format"] == "onnx":
        return OnnxModule(path, onnx_providers(dev), threads, half=record.get("dtype") == "float16").eval()
    # A TorchScript archive holds TorchScript code and tensors: loading runs no Python pickle.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, still what LibTorch loads
        module = torch.jit.load(str(path), map_location=dev).eval()
    for p in module.parameters():  # an encoder for inference: no autograd graph outside inference_mode
        p.requires_grad_(False)
    return module


def deployed_encoder_fields(directory: Union[str, Path], device: Optional[Union[str, torch.device]] = None,
                            image_size: Optional[int] = None) -> Dict[str, Any]:
    """The ``LoadedEncoder`` fields of a ``unicom-export`` folder (all but ``source``).

    The graph's input size is fixed at export: another ``image_size`` is refused with the
    command that makes one of that size. ``kind`` is the graph format, ``weights`` the graph
    file (so an index records the export's file and its SHA-256, ``extra["sha256"]``)."""
    record = fmt.read_record(directory)
    size = int(record["image_size"])
    if image_size is not None and int(image_size) != size:
        raise ValueError(f"the export at {directory} takes {size}-px images (fixed in the graph); export again with "
                         f"unicom-export --image-size {int(image_size)}, or leave --image-size out")
    model = load_graph(directory, record, device)
    mean, std = tuple(float(v) for v in record["mean"]), tuple(float(v) for v in record["std"])
    extra = {"sha256": record["sha256"], "graph_format": record["graph_format"], "dtype": record.get("dtype"),
             "normalized": bool(record["normalized"]), "dims": record.get("dims"),
             "exported_from": (record.get("encoder") or {}).get("model")}
    return {"model": model, "transform": eval_transform(size, mean, std), "image_size": size, "mean": mean,
            "std": std, "embed_dim": int(record["embed_dim"]), "kind": record["graph_format"],
            "weights": str(Path(directory) / record["graph"]), "extra": extra}
