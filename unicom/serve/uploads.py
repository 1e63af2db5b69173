"""What a query image may be: the checks on untrusted bytes before and while they are decoded.

Uploads are decoded by ``unicom.data.decode`` (the toolkit's one decode policy) after two checks:
the body size (``--max-upload-mb``, also enforced while the body
streams in, ``unicom.serve.app.BodyLimit``) and the pixel count read from the header
(``--max-image-pixels``), so that a decompression bomb (a small file that decodes to gigabytes) is
refused before a single pixel is decoded."""
from __future__ import annotations

import base64
import binascii
import warnings
from typing import Optional

from ..data.decode import current_policy, decode
from ..data.images import DECODE_ERRORS
from .errors import ApiError, bad_request


def decode_upload(data: bytes, max_pixels: int, name: str = "the image"):
    """Bytes of an uploaded image → an RGB PIL image decoded under the toolkit's decode policy
    (the process's, i.e. the index's background), with ``max_pixels`` as its size limit, checked
    on the header before any pixel is decoded; or ``ApiError`` (400 ``empty_image``,
    ``not_an_image``, ``bad_image``; 413 ``decompression_bomb``) naming ``name``."""
    from dataclasses import replace

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise bad_request("empty_image", f"{name} is empty (0 bytes)")
    policy = replace(current_policy(), max_pixels=int(max_pixels))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the policy's limit decides
            return decode(data, policy)
    except UnidentifiedImageError:
        raise bad_request("not_an_image", f"{name} is not an image Pillow can read (JPEG, PNG, WebP, …)") from None
    except Image.DecompressionBombError as exn:
        raise _bomb(name, str(exn)) from None
    except DECODE_ERRORS as exn:  # truncated, corrupt data after a valid header, …
        raise bad_request("bad_image", f"{name} cannot be decoded ({exn}); is the file complete?") from None


def _bomb(name: str, why: str) -> ApiError:
    return ApiError(413, "decompression_bomb", f"{name} is too large to decode ({why}); send a smaller image")


def decode_base64(text: object, max_pixels: int, name: str = "image") -> "object":
    """A base64 string (optionally a ``data:image/...;base64,`` URL) → an RGB PIL image."""
    if not isinstance(text, str):
        raise bad_request("bad_json", f"{name} must be a base64 string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("bad_base64", f"{name} is not valid base64") from None
    return decode_upload(data, max_pixels, name)


def item_id_from_url(url: object, n: int) -> Optional[int]:
    """The item id of a URL of this service's own ``/items/ID/image`` (absolute or relative), or
    None. The service never fetches other URLs: that would let any client make it reach any host."""
    if not isinstance(url, str):
        return None
    from urllib.parse import urlparse

    parts = urlparse(url).path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "items" and parts[2] == "image" and parts[1].isdigit():
        i = int(parts[1])
        return i if 0 <= i < n else None
    return None
