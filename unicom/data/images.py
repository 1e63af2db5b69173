"""The one image opener of the toolkit: a path or a PIL image → a fully decoded RGB image under
the decode policy of ``unicom.data.decode`` (docs/images.md)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from PIL import Image

from .decode import DecodePolicy, decode

# what a file that is not a readable image raises when it is decoded; DecompressionBombError is
# the policy's size limit (counted as ``too_large``)
DECODE_ERRORS: Tuple[type, ...] = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def open_image(item, box: Optional[Sequence[float]] = None, policy: Optional[DecodePolicy] = None):
    """Open ``item`` (a path, encoded bytes or an in-memory PIL image) as RGB under ``policy``
    (default: the process's, ``unicom.data.decode.current_policy``), cropped to ``box`` (x0, y0,
    x1, y1 in pixels of the upright image) if given. The file is decoded fully here, so a
    truncated file fails here and not later in a worker; raises ``FileNotFoundError`` / an
    ``OSError`` for unreadable files and ``DecompressionBombError`` over the size limit."""
    img = decode(item, policy)
    if box is not None:
        img = img.crop(tuple(int(round(v)) for v in box))
    return img


def skip_reason(exc: BaseException) -> str:
    """The counted skip reason (``unicom.data.wds_reader.SKIP_REASONS``) of an image that failed to
    open: ``missing_image`` for a file that is not there, ``too_large`` over the size limit,
    else ``bad_image``."""
    if isinstance(exc, FileNotFoundError):
        return "missing_image"
    return "too_large" if isinstance(exc, Image.DecompressionBombError) else "bad_image"


def sidecar_text(image_path, suffix: str = ".txt"):
    """The text of ``NAME.txt`` (or ``suffix``) beside ``NAME.jpg`` — img2dataset's files layout
    keeps a sample's caption and json that way — stripped, or None when absent or empty."""
    from pathlib import Path

    p = Path(image_path).with_suffix(suffix)
    if not p.is_file():
        return None
    return p.read_text(encoding="utf-8", errors="replace").strip() or None
