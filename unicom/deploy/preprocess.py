"""``preprocess.json``: the eval transform (``unicom.data.transforms.eval_transform``) and the
image decoding (``unicom.data.images.open_image``) written out step by step, so that a client
in any language feeds the graph exactly what PyTorch fed the encoder.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

PREPROCESS_VERSION = 1

# How ``unicom.data.images.open_image`` turns a file into pixels.
DECODE_POLICY: Dict[str, Any] = {
    "library": "Pillow",
    "mode": "RGB",
    "convert": "Image.convert('RGB') of the fully decoded image: palette and grey images are expanded, an alpha "
               "channel is dropped (no compositing), CMYK is converted by Pillow",
    "exif_orientation": "ignored (pixels as stored)",
    "animated": "first frame",
    "unreadable": "skipped and counted as bad_image, never embedded",
}


def decode_policy() -> Dict[str, Any]:
    """The decoding rules of ``open_image``: the image module's own ``DECODE_POLICY`` when it
    declares one, else the rules above."""
    from ..data import images

    return dict(getattr(images, "DECODE_POLICY", None) or DECODE_POLICY)


def preprocess_record(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Dict[str, Any]:
    """The ``preprocess.json`` of an encoder taking ``image_size``-px images normalised with
    ``mean``/``std`` (per RGB channel, on pixel values scaled to [0, 1])."""
    s = int(image_size)
    return {
        "version": PREPROCESS_VERSION,
        "image_size": s,
        "decode": decode_policy(),
        "resize": {"edge": "shorter", "size": s, "interpolation": "bicubic", "antialias": True,
                   "long_side": "floor(size * long / short)",
                   "reference": "PIL.Image.resize((w, h), Image.BICUBIC) (torchvision Resize on a PIL image)"},
        "crop": {"type": "center", "size": [s, s],
                 "offset": "left = round((w - size) / 2), top = round((h - size) / 2), halves to even (Python round)"},
        "scale": 1.0 / 255.0,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "normalize": "(pixel * scale - mean[c]) / std[c]",
        "layout": "NCHW",
        "channel_order": "RGB",
        "dtype": "float32",
    }
