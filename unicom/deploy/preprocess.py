"""``preprocess.json``: the eval transform (``unicom.data.transforms.eval_transform``) and the
image decoding (``unicom.data.images.open_image``) written out step by step, so that a client
in any language feeds the graph exactly what PyTorch fed the encoder.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

PREPROCESS_VERSION = 1

# How ``open_image`` turns a file into pixels where the toolkit has no configurable decode
# policy (a plain Pillow RGB conversion).
PLAIN_DECODE: Dict[str, Any] = {
    "library": "Pillow",
    "mode": "RGB",
    "steps": ["first frame of an animation",
              "Image.convert('RGB') of the fully decoded image: palette and grey images expanded, an alpha channel "
              "dropped (no compositing), CMYK converted by Pillow",
              "EXIF orientation ignored (pixels as stored)"],
    "unreadable": "skipped and counted as bad_image, never embedded",
}

# The steps of ``unicom.data.decode`` (docs/images.md), in order, for a client to reproduce.
POLICY_STEPS = [
    "size limit: more than max_pixels pixels (from the header) is refused, counted as too_large",
    "first frame of an animated GIF, WebP or APNG",
    "EXIF orientation applied (ImageOps.exif_transpose)",
    "16/32-bit integer and 32-bit float images scaled linearly to 8 bits over their range (lowest value, or 0 "
    "when none is negative, to black; highest to white)",
    "CMYK, or an embedded ICC profile that is not sRGB, converted to sRGB (ImageCms, perceptual intent)",
    "transparency composited onto the background colour: out = a/255*c + bg*(255-a)/255, rounded",
]


def decode_policy() -> Dict[str, Any]:
    """The decoding that ``unicom.data.images.open_image`` applies: the process's decode policy
    (``unicom.data.decode``: its record, version and background, and its steps) where the
    toolkit has one, else the plain Pillow conversion."""
    try:
        from ..data.decode import current_policy  # type: ignore[import-not-found,attr-defined,unused-ignore]
    except ImportError:
        return dict(PLAIN_DECODE)
    policy = current_policy()
    return {"library": "Pillow", "mode": "RGB", **policy.record(), "max_pixels": int(policy.max_pixels),
            "steps": list(POLICY_STEPS), "unreadable": "skipped and counted, never embedded"}


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
