"""Turn the module to export into a graph file: ONNX (``torch.onnx.export``, the torch.export
based exporter, with a dynamic batch axis) or TorchScript (``torch.jit.trace``).

Every file is written atomically; the SHA-256 of each written file is returned, as it goes
into ``deploy.json``.
"""
from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path
from typing import Dict

import torch
import torch.nn as nn

from ..formats import deploy as fmt
from ..formats.atomic_io import atomic_path, write_bytes
from .options import DEFAULT_OPSET

MIN_OPSET = 18  # the torch.export-based exporter writes nothing older
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
# protobuf cannot serialise one message over 2 GiB: bigger graphs keep their weights beside them
EXTERNAL_DATA_BYTES = 1_800_000_000
MAX_BATCH = 65536


class ExportError(RuntimeError):
    """The encoder could not be turned into a graph (an unsupported operator, …): one line."""


def _first_line(exn: BaseException) -> str:
    """The root cause of an exporter failure in one line: the operator without a translation
    when that is what failed, else the first line of the innermost error."""
    while exn.__cause__ is not None:
        exn = exn.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exn))
    op = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", text)
    if op:
        return f"the operator {op.group(1)} has no ONNX translation"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines or [type(exn).__name__])[0][:300]


def export_onnx(module: nn.Module, example: torch.Tensor, directory: Path, opset: int = DEFAULT_OPSET,
                fp16: bool = False) -> Dict[str, str]:
    """Export ``module`` (eval mode, CPU, fp32) to ``directory/model.onnx`` with a dynamic batch
    axis; ``fp16`` converts the weights and arithmetic to float16 (inputs and outputs stay
    float32). Returns {file name: SHA-256}. An operator the exporter cannot translate is an
    ``ExportError`` naming it."""
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"--opset {opset} is too old for the exporter; use {MIN_OPSET} or later")
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, (example,), None, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], opset_version=int(opset), dynamo=True,
                                        dynamic_shapes=({0: batch},), verbose=False)
    except Exception as exn:  # the exporter raises many types; the user needs the first line
        raise ExportError(f"cannot export to ONNX at opset {opset}: {_first_line(exn)}; try a newer --opset or "
                          "--format torchscript") from exn
    assert program is not None  # dynamo=True without a file name returns the program
    proto = program.model_proto
    if fp16:
        proto = to_float16(proto)
        onnx.checker.check_model(proto)
    name = fmt.GRAPH_FILES["onnx"]
    path = Path(directory) / name
    size = sum(t.numel() * (2 if fp16 else 4) for t in module.state_dict().values())
    if size < EXTERNAL_DATA_BYTES:
        write_bytes(path, proto.SerializeToString())
        return {name: fmt.sha256_file(path)}
    data = name + fmt.ONNX_DATA_SUFFIX
    (Path(directory) / data).unlink(missing_ok=True)  # onnx appends to an existing data file
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    return {name: fmt.sha256_file(path), data: fmt.sha256_file(Path(directory) / data)}


def to_float16(proto):
    """An fp32 ONNX model with float16 weights and arithmetic (onnxruntime's converter; the
    operators it knows to be unsafe in fp16 stay fp32), float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True)
    # the converter appends its input casts after their consumers; ONNX wants nodes in order
    sort_nodes(half.graph)
    return half


def sort_nodes(graph) -> None:
    """Reorder ``graph.node`` topologically (a stable Kahn sort), in place."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ExportError(f"the ONNX graph has a cycle or an undefined input at node {rest[0].name!r}")
        pending = rest
    copies = [type(n)() for n in ordered]
    for dst, src in zip(copies, ordered):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(copies)


def export_torchscript(module: nn.Module, example: torch.Tensor, directory: Path) -> Dict[str, str]:
    """Trace ``module`` on ``example`` into ``directory/model.torchscript.pt`` (sizes taken from the
    input, so the batch stays dynamic). Returns {file name: SHA-256}."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still what TorchScript users load
            traced = torch.jit.trace(module, (example,), check_trace=False)
    except Exception as exn:
        raise ExportError(f"cannot trace the encoder into TorchScript: {_first_line(exn)}; try --format onnx") from exn
    name = fmt.GRAPH_FILES["torchscript"]
    path = Path(directory) / name
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(tmp))
    return {name: fmt.sha256_file(path)}
