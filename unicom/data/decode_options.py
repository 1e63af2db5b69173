"""The flags of the image decode policy (``unicom.data.decode``), shared by every command that
reads images: ``--background`` (the colour transparency is composited onto) and
``--max-image-pixels`` (the decompression-bomb limit). Import-light (stdlib only), so that the
commands' ``--help`` stays fast."""
from __future__ import annotations

import argparse

DEFAULT_BACKGROUND = "white"          # img2dataset's resizer mats alpha onto white before writing shards
DEFAULT_MAX_PIXELS = 2 * 89_478_485   # Pillow's own refusal point (2 × Image.MAX_IMAGE_PIXELS)
BACKGROUND_HELP = ("colour that transparent images (RGBA, LA, palette with transparency) are composited onto: a "
                   "name (white, black, gray), #RRGGBB or R,G,B; white as img2dataset's resizer (docs/images.md)")
MAX_PIXELS_HELP = ("images with more pixels (width x height) are skipped and counted as too_large before they "
                   "are decoded; 0 = no limit")


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--background`` and ``--max-image-pixels`` to a plain argparse parser."""
    parser.add_argument("--background", default=DEFAULT_BACKGROUND, help=BACKGROUND_HELP)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=MAX_PIXELS_HELP)

