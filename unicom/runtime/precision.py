"""The autocast precisions every model-running command accepts, and the one default.

Import-light on purpose (no torch): command-line parsers read ``DEFAULT_PRECISION`` before
``--help`` returns.

Why bf16 is the default: bfloat16 keeps float32's 8-bit exponent, so activations of large ViTs
(attention logits, MLP outputs) cannot overflow to inf the way float16's 5-bit exponent can,
which would turn embeddings into NaN; it is also what the trainer's autocast uses, so an
encoder is evaluated in the precision it was trained in. GPUs without bf16 (before Ampere) take
``fp16``; the CPU always runs fp32.
"""
from __future__ import annotations

PRECISIONS = ("bf16", "fp16", "fp32")
DEFAULT_PRECISION = "bf16"
