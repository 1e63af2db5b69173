"""Image files for the decode-policy tests, written from the real photographs that
scikit-image ships in its wheel (``skimage.data``: astronaut, chelsea, camera, horse, and the
animated ``no_time_for_that_tiny.gif``): transparent cut-outs, EXIF-rotated copies, 16-bit
copies, animated copies, CMYK copies and an image tagged with a (hand-built) ICC profile."""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import torch
from PIL import Image

ORIENTATION = 0x0112


def skimage_file(name: str) -> Path:
    """A file of ``skimage.data`` as shipped (no download)."""
    from skimage import data

    path = Path(data.__file__).parent / name
    assert path.is_file(), f"{path} is not in the scikit-image wheel"
    return path


def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def cutout(hidden: str = "photo") -> Tuple[Image.Image, np.ndarray]:
    """An RGBA product-style cut-out: the astronaut's photo under the alpha of skimage's horse
    silhouette (soft-edged). Under the transparent pixels lies what real files keep there: the
    rest of the ``photo``, or ``stripes`` of red. Returns (RGBA image, alpha uint8 [H, W])."""
    from skimage import data

    mask = np.asarray(Image.fromarray((~data.horse()).astype(np.uint8) * 255).resize((200, 164), Image.BILINEAR))
    photo = np.asarray(astronaut().resize((200, 164), Image.BICUBIC)).copy()
    if hidden == "stripes":
        stripe = (np.arange(photo.shape[0]) // 6) % 2 == 0
        photo[(mask == 0) & stripe[:, None]] = (220, 20, 20)
        photo[(mask == 0) & ~stripe[:, None]] = (0, 0, 0)
    rgba = np.dstack([photo, mask]).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA"), mask


def composite_white(rgba: Image.Image) -> Image.Image:
    """img2dataset's resizer, written independently: alpha/255·c + 255 − alpha, rounded."""
    a = np.asarray(rgba).astype(np.float64)
    alpha = a[..., 3:4]
    out = alpha / 255 * a[..., :3] + 255 - alpha
    return Image.fromarray(np.rint(out.clip(0, 255)).astype(np.uint8), "RGB")


def save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def with_orientation(upright: Image.Image, path: Path, fmt: str = "JPEG") -> Path:
    """``upright`` stored rotated 90° counter-clockwise with EXIF orientation 6 (display: rotate
    90° clockwise), as a phone held upright writes it."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return save(stored, path, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def sixteen_bit(gray8: np.ndarray, path: Path) -> Path:
    """A 16-bit greyscale PNG (Pillow mode I;16) holding ``gray8`` × 257 (full 16-bit range)."""
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path, "PNG")
    return path


def gradient16(path: Path, width: int = 512, height: int = 16) -> Path:
    """A full-range 16-bit horizontal gradient 0 … 65535."""
    row = np.linspace(0, 65535, width).round().astype(np.uint16)
    Image.fromarray(np.tile(row, (height, 1))).save(path, "PNG")
    return path


def animated(frames: Sequence[Image.Image], path: Path, fmt: str) -> Path:
    """An animated GIF / WebP / PNG (APNG) of ``frames``."""
    kw = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=list(frames[1:]), duration=100, loop=0, **kw)
    return path


# --------------------------------------------------------------------------------------------
# A minimal ICC v2 RGB display profile, built here (no profile files ship with the dependencies)
# --------------------------------------------------------------------------------------------
# sRGB's colorants adapted to D50 (the ICC connection space), and D50 itself
SRGB_RED = (0.4361, 0.2225, 0.0139)
SRGB_GREEN = (0.3851, 0.7169, 0.0971)
SRGB_BLUE = (0.1431, 0.0606, 0.7141)
D50 = (0.9642, 1.0, 0.8249)


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _xyz(xyz) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(v) for v in xyz)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0" * 3 + b"\0" * 67)


def rgb_profile(red, green, blue, gamma: float = 2.2, description: str = "Swapped-primaries test RGB") -> bytes:
    """An ICC v2 matrix/TRC RGB profile with the given D50 colorants and a pure gamma curve."""
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", int(round(gamma * 256))) + b"\0\0"
    tags = [(b"desc", _desc(description)), (b"wtpt", _xyz(D50)), (b"rXYZ", _xyz(red)), (b"gXYZ", _xyz(green)),
            (b"bXYZ", _xyz(blue)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"none" + bytes([2, 0x10, 0, 0]) + b"mntr" + b"RGB " + b"XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 4 + b"\0" * 4 + b"\0" * 8 + b"\0" * 8 + b"\0" * 4
              + b"".join(_s15(v) for v in D50) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def swapped_profile() -> bytes:
    """A profile whose red and blue primaries are sRGB's blue and red: a pixel stored as
    (255, 0, 0) under it is sRGB blue."""
    return rgb_profile(SRGB_BLUE, SRGB_GREEN, SRGB_RED)


def srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


class PoolEncoder(torch.nn.Module):
    """A tiny 'encoder': the image averaged into 4 × 4 cells of each channel (48 numbers), so
    that embeddings still show the background colour and the orientation."""

    embed_dim = 48

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def pool_encoder(name: str = "pool-encoder"):
    """``PoolEncoder`` as a ``LoadedEncoder`` whose transform keeps the full image (to tensor)."""
    from torchvision import transforms as T

    from unicom.models.encoders import module_encoder

    return module_encoder(PoolEncoder(), T.ToTensor(), device="cpu", name=name)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()
