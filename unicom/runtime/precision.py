"""The autocast precisions every model-running command accepts, the one default, and what
``auto`` resolves to on a device.

Import-light on purpose (torch is imported inside the functions only): command-line parsers read
``DEFAULT_PRECISION`` before ``--help`` returns.

``auto`` (the default everywhere) picks:

* CUDA: ``bf16`` where the GPU has it (Ampere and later), ``fp16`` on older GPUs;
* CPU: ``bf16`` where the CPU multiplies bfloat16 natively (Intel AMX, or AVX-512 BF16 as on
  Intel Cooper Lake and later and AMD Zen 4), found with torch's own CPU-capability query;
  ``fp32`` on other CPUs, where torch would emulate bf16 and run slower than float32.

Why bf16 rather than fp16: bfloat16 keeps float32's 8-bit exponent, so activations of large
ViTs (attention logits, MLP outputs) cannot overflow to inf the way float16's 5-bit exponent
can, which would turn embeddings into NaN; it is also what the trainer's autocast uses, so an
encoder is evaluated in the precision it was trained in. ``fp32`` forces float32 everywhere.
An explicit ``bf16`` is honoured on any device (emulated where the CPU lacks it); ``fp16`` on
the CPU runs fp32 (CPU float16 GEMMs are emulated on every CPU this toolkit targets).
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Set, Tuple

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEFAULT_PRECISION = "auto"
RESOLVED = ("bf16", "fp16", "fp32")

_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "no": "fp32"}
_announced: Set[Tuple[str, str, str]] = set()
log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 in hardware (AMX tiles or AVX-512 BF16), by torch's
    own capability query (the same check oneDNN uses to pick its bf16 kernels)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(c is not None for c in checks):
        return any(bool(c()) for c in checks if c is not None)
    # torch builds without those hooks: oneDNN's own verdict
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_bf16(device: Any = None) -> bool:
    """True when the CUDA device supports bfloat16 (Ampere and later)."""
    import torch

    if not torch.cuda.is_available():
        return False
    index = getattr(device, "index", None)
    major, _ = torch.cuda.get_device_capability(index if index is not None else torch.cuda.current_device())
    return major >= 8


def _device_type(device: Any) -> str:
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


def resolve_precision(precision: str, device: Any = "cpu") -> str:
    """The precision that runs on ``device`` (a ``torch.device`` or its name) for the requested
    ``precision``: ``bf16``, ``fp16`` or ``fp32`` (see the module docstring). An unknown name is
    a ValueError naming the choices."""
    p = _ALIASES.get(str(precision).lower(), str(precision).lower())
    if p not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    kind = _device_type(device)
    if kind == "cuda":
        if p == "auto":
            return "bf16" if cuda_has_bf16(device) else "fp16"
        return p
    if kind != "cpu":  # mps and other backends: float32, as before
        return "fp32"
    if p == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "bf16" if p == "bf16" else "fp32"


def announce_precision(precision: str, device: Any = "cpu", what: str = "model") -> str:
    """``resolve_precision`` that also says once per process (stderr) what ``auto`` chose and
    why, for each (request, device kind, purpose); returns the resolved precision."""
    resolved = resolve_precision(precision, device)
    key = (str(precision), _device_type(device), what)
    if key not in _announced:
        _announced.add(key)
        if str(precision).lower() == "auto":
            kind = _device_type(device)
            why = ("the GPU has bf16" if resolved == "bf16" else "no bf16 on this GPU") if kind == "cuda" else (
                "this CPU has native bf16 (AMX / AVX-512 BF16)" if resolved == "bf16"
                else "this CPU has no native bf16; --precision bf16 would be emulated and slower")
            print(f"precision auto → {resolved} for the {what} on {kind} ({why}; --precision fp32 forces "
                  "float32)", file=sys.stderr)
        log.debug("precision %s → %s on %s (%s)", precision, resolved, _device_type(device), what)
    return resolved
