"""The one image opener of the toolkit: a path or a PIL image → a fully decoded RGB image."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

# what a file that is not a readable image raises when it is decoded (PIL's DecompressionBombError
# is a subclass of none of them: callers that read untrusted sets add it)
DECODE_ERRORS: Tuple[type, ...] = (OSError, ValueError, SyntaxError, EOFError)


def open_image(item, box: Optional[Sequence[float]] = None):
    """Open ``item`` (a path or an in-memory PIL image) as RGB, cropped to ``box`` (x0, y0, x1,
    y1 in pixels) if given. The file is decoded fully here, so a truncated file fails here and
    not later in a worker; raises ``FileNotFoundError`` / an ``OSError`` for unreadable files."""
    from PIL import Image

    if isinstance(item, Image.Image):
        img = item
    else:
        with Image.open(item) as f:
            f.load()
            img = f.convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    if box is not None:
        img = img.crop(tuple(int(round(v)) for v in box))
    return img


def skip_reason(exc: BaseException) -> str:
    """The counted skip reason (``unicom.data.wds_reader.SKIP_REASONS``) of an image that failed to
    open: ``missing_image`` for a file that is not there, else ``bad_image``."""
    return "missing_image" if isinstance(exc, FileNotFoundError) else "bad_image"


def sidecar_text(image_path, suffix: str = ".txt"):
    """The text of ``NAME.txt`` (or ``suffix``) beside ``NAME.jpg`` — img2dataset's files layout
    keeps a sample's caption and json that way — stripped, or None when absent or empty."""
    from pathlib import Path

    p = Path(image_path).with_suffix(suffix)
    if not p.is_file():
        return None
    return p.read_text(encoding="utf-8", errors="replace").strip() or None
