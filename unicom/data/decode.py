"""The toolkit's one image decode policy: a file, bytes or a PIL image → an 8-bit RGB image.

Every reader (shard members, image folders, list files, CSV and benchmark lists, distractors,
``unicom-embed``, ``unicom-search``, the trainer, the clustering extraction) decodes through
``decode``; docs/images.md states the policy and why. In order:

1. **Size limit.** An image of more than ``max_pixels`` pixels (width × height, read from the
   header before any pixel is decoded) is refused with ``PIL.Image.DecompressionBombError``
   and counted as the skip ``too_large``. The default is the size Pillow itself refuses
   (2 × ``Image.MAX_IMAGE_PIXELS`` = 178,956,970 px); 0 means no limit.
2. **First frame.** An animated GIF, WebP or APNG gives its first frame.
3. **EXIF orientation** is applied (``ImageOps.exif_transpose``), as viewers and OpenCV do.
4. **High bit depth.** 16-bit and 32-bit integer and 32-bit float images (modes ``I;16*``,
   ``I``, ``F``) are scaled linearly to 8 bits over their real range: the lowest value (or 0,
   when no value is negative) becomes black and the highest value white. Non-finite values
   become black.
5. **Colour profiles.** A CMYK image, or any image with an embedded ICC profile that is not
   sRGB, is converted to sRGB with Pillow's ``ImageCms`` (perceptual intent, Pillow's default).
   Without a profile (or with an sRGB one) the plain conversion is used, so a plain RGB JPEG
   comes out bit-identical to ``convert("RGB")``.
6. **Transparency** (RGBA, LA, PA, palette or L/RGB images with a transparency key) is
   composited onto ``background`` (white by default), with img2dataset's resizer formula
   ``out = a/255·c + bg·(255 − a)/255``, rounded.

``POLICY_VERSION`` changes whenever the pixels this policy produces for some input change;
``DecodePolicy.record()`` is what features, index and export records keep.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from .decode_options import DEFAULT_MAX_PIXELS  # noqa: F401  (Pillow's refusal point: 2 × MAX_IMAGE_PIXELS)

POLICY_VERSION = 1
DEFAULT_BACKGROUND: Tuple[int, int, int] = (255, 255, 255)   # img2dataset's resizer mats alpha onto white
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")
_ORIENTATION = 0x0112

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, io.IOBase, Image.Image]


def parse_background(value: Union[str, Sequence[int], None]) -> Tuple[int, int, int]:
    """An RGB triple from a colour name (``white``, ``black``, ``gray``), ``#RRGGBB`` or
    ``R,G,B`` (0-255 each); a ValueError saying what is accepted otherwise."""
    from PIL import ImageColor

    if value is None:
        return DEFAULT_BACKGROUND
    if isinstance(value, (list, tuple)):
        parts = list(value)
    elif "," in str(value):
        parts = [p.strip() for p in str(value).split(",")]
    else:
        try:
            return tuple(ImageColor.getrgb(str(value).strip())[:3])  # type: ignore[return-value]
        except ValueError:
            parts = []
    try:
        rgb = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"background colour {value!r} is not a colour: give a name (white, black, gray), "
                         "#RRGGBB or R,G,B with 0-255 each")
    return rgb  # type: ignore[return-value]


def background_hex(rgb: Sequence[int]) -> str:
    """``(255, 255, 255)`` → ``"#ffffff"``."""
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


@dataclass(frozen=True)
class DecodePolicy:
    """The settings of the policy: the ``background`` that transparency is composited onto (RGB)
    and the ``max_pixels`` above which an image is refused (0: no limit)."""

    background: Tuple[int, int, int] = DEFAULT_BACKGROUND
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_settings(cls, background: Union[str, Sequence[int], None] = None,
                      max_pixels: Optional[int] = None) -> "DecodePolicy":
        """Build from the ``--background`` / ``--max-image-pixels`` values (None: the default)."""
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        if limit < 0:
            raise ValueError(f"max image pixels must be ≥ 0 (0: no limit), got {limit}")
        return cls(parse_background(background), limit)

    def record(self) -> Dict[str, Any]:
        """What records keep: ``{"version": POLICY_VERSION, "background": "#rrggbb"}``. The size
        limit changes which images are read, not their pixels, so it is not part of it."""
        return {"version": POLICY_VERSION, "background": background_hex(self.background)}


_current = DecodePolicy()


def set_policy(policy: DecodePolicy) -> DecodePolicy:
    """Make ``policy`` this process's default (commands call it once, from their flags);
    returns the previous one. Datasets capture the policy when they are built, so DataLoader
    workers decode under it whatever their start method."""
    global _current
    previous, _current = _current, policy
    return previous


def apply_decode_settings(background: Optional[str] = None, max_pixels: Optional[int] = None) -> DecodePolicy:
    """Make the policy of ``--background`` / ``--max-image-pixels`` the process's default
    (``set_policy``) and return it; a bad colour or limit is a ValueError naming the flags."""
    try:
        policy = DecodePolicy.from_settings(background, max_pixels)
    except ValueError as exn:
        raise ValueError(f"--background / --max-image-pixels: {exn}") from None
    set_policy(policy)
    return policy


def current_policy() -> DecodePolicy:
    """The process's default policy (``set_policy``), white background unless changed."""
    return _current


class using_policy:
    """``with using_policy(p):`` makes ``p`` the process's default for the block (then restores)."""

    def __init__(self, policy: Optional[DecodePolicy]):
        self.policy, self.previous = policy, None

    def __enter__(self) -> DecodePolicy:
        self.previous = set_policy(self.policy) if self.policy is not None else None
        return current_policy()

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            set_policy(self.previous)


def policy_mismatch(recorded: Optional[Dict[str, Any]], policy: Optional[DecodePolicy] = None) -> Optional[str]:
    """Why images decoded under ``recorded`` (a ``record()`` dict from a features, index or
    export record) differ from ``policy``'s, or None when they match. A missing record
    (made before the policy was recorded) is reported as such."""
    ours = (policy or current_policy()).record()
    if not recorded:
        return f"it records no image decode policy (made before policy {POLICY_VERSION}); this run: {ours}"
    diff = [f"{k} {recorded.get(k)!r} vs {ours[k]!r}" for k in ours if recorded.get(k) != ours[k]]
    return ("its images were decoded under another policy (" + ", ".join(diff) + ")") if diff else None


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
def decode(source: Source, policy: Optional[DecodePolicy] = None) -> Image.Image:
    """Decode ``source`` (a path, encoded bytes, a binary file object or a PIL image) into a
    fully loaded 8-bit RGB image under ``policy`` (default: ``current_policy()``). Raises
    ``FileNotFoundError`` / ``OSError`` / ``ValueError`` for unreadable data and
    ``PIL.Image.DecompressionBombError`` for an image over the size limit."""
    policy = policy or current_policy()
    if isinstance(source, Image.Image):
        return to_rgb(source, policy)
    fp = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with open_checked(fp, policy) as im:
        im.load()  # the whole first frame: a truncated file fails here, not later in a worker
        return to_rgb(im, policy)


def open_checked(fp: Any, policy: DecodePolicy) -> Image.Image:
    """``Image.open`` with the policy's size limit checked on the header, before any pixel is
    decoded. A limit above Pillow's own refusal point lifts Pillow's (a process-wide setting)."""
    limit = policy.max_pixels
    if Image.MAX_IMAGE_PIXELS is not None and (limit == 0 or limit > 2 * Image.MAX_IMAGE_PIXELS):
        Image.MAX_IMAGE_PIXELS = None if limit == 0 else limit
    im = Image.open(fp)
    if limit and im.width * im.height > limit:
        size = f"{im.width}x{im.height}"
        im.close()
        raise Image.DecompressionBombError(f"image of {size} = {im.width * im.height} pixels is over the limit of "
                                           f"{limit} (--max-image-pixels; 0 = no limit)")
    return im


def to_rgb(im: Image.Image, policy: Optional[DecodePolicy] = None) -> Image.Image:
    """Apply steps 2-6 of the policy to a PIL image (see the module docstring). A plain RGB
    image without orientation tag or non-sRGB profile is returned as it is."""
    policy = policy or current_policy()
    im = _first_frame(im)
    im = _orient(im)
    if im.mode in HIGH_BIT_MODES:
        return _scale_to_8bit(im).convert("RGB")
    icc = im.info.get("icc_profile")
    alpha = im.mode in ALPHA_MODES or "transparency" in im.info
    if im.mode == "P" or (alpha and im.mode != "RGBA"):
        im = im.convert("RGBA" if alpha else "RGB")
    if icc and im.mode in ("RGB", "RGBA", "CMYK", "L"):
        im = _to_srgb(im, icc)
    if im.mode == "RGBA":
        return _composite(im, policy.background)
    return im if im.mode == "RGB" else im.convert("RGB")


def _first_frame(im: Image.Image) -> Image.Image:
    if getattr(im, "n_frames", 1) > 1 and im.tell() != 0:
        im.seek(0)
        im.load()
    return im


def _orient(im: Image.Image) -> Image.Image:
    try:
        orientation = im.getexif().get(_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, TypeError):
        return im  # unreadable EXIF: the pixels are still good
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im) or im
    return im


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """A single-channel 16/32-bit integer or float image → mode L, linearly over its range."""
    a = np.asarray(im).astype(np.float64)
    finite = np.isfinite(a)
    out = np.zeros(a.shape, np.uint8)
    if finite.any():
        lo = min(0.0, float(a[finite].min()))
        hi = float(a[finite].max())
        if hi > lo:
            scaled = np.rint((np.where(finite, a, lo) - lo) * (255.0 / (hi - lo)))
            out = np.clip(scaled, 0, 255).astype(np.uint8)
            out[~finite] = 0
    return Image.fromarray(out, "L")


def _srgb_profile():
    from PIL import ImageCms

    return ImageCms.createProfile("sRGB")


def _is_srgb(profile) -> bool:
    from PIL import ImageCms

    try:
        desc = ImageCms.getProfileDescription(profile) or ""
    except ImageCms.PyCMSError:
        return False
    return "srgb" in desc.lower().replace(" ", "")


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """Convert through the embedded profile to sRGB; an sRGB profile is left alone (so the
    pixels stay bit-exact), a broken one falls back to the plain conversion."""
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if im.mode in ("RGB", "RGBA") and _is_srgb(src):
            return im
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(im, src, _srgb_profile(), outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im
    return converted if converted is not None else im


@lru_cache(maxsize=8)
def _blend_table(bg: int) -> np.ndarray:
    """uint8 [256 alpha, 256 colour]: img2dataset's ``rint(a/255·c + bg·(255 − a)/255)`` (float64)."""
    a = np.arange(256, dtype=np.float64)[:, None]
    c = np.arange(256, dtype=np.float64)[None, :]
    return np.rint((a / 255.0 * c + bg * (255.0 - a) / 255.0).clip(0, 255)).astype(np.uint8)


def _composite(im: Image.Image, background: Sequence[int]) -> Image.Image:
    """RGBA → RGB over ``background`` by img2dataset's formula, looked up per channel in a
    table of all alpha × colour values (exactly the float64 result, much faster)."""
    a = np.asarray(im)
    alpha = a[..., 3]
    if alpha.min() == 255:
        return im.convert("RGB")
    out = np.empty(a.shape[:2] + (3,), np.uint8)
    for ch in range(3):
        out[..., ch] = _blend_table(int(background[ch]))[alpha, a[..., ch]]
    return Image.fromarray(out, "RGB")
