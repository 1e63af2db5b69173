"""Every setting of ``unicom-serve`` and its default, written once: the flags are generated from
``ServeConfig`` (``unicom.cli.dataclass_args``). Import-light (no torch): ``--help`` reads it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..cli.dataclass_args import option
from ..runtime.precision import DEFAULT_PRECISION, PRECISIONS

DEFAULT_HOST = "127.0.0.1"  # loopback only: exposing the service is an explicit choice (--host 0.0.0.0)


@dataclass
class ServeConfig:
    """What ``unicom-serve`` serves and the limits it keeps (sizes in MB/pixels, times in seconds)."""

    index: Optional[str] = option(None, "the index folder (OUTPUT/index) or unicom-embed's OUTPUT to search",
                                  group="inputs")
    clusters: Optional[str] = option(None, "a unicom-cluster output folder whose pseudo classes the page browses",
                                     group="inputs")
    model: Optional[str] = option(None, "Unicom encoder for the queries (None: the one recorded in the index; "
                                        "another one is refused)", group="inputs")
    host: str = option(DEFAULT_HOST, "address to bind (127.0.0.1: this machine only)", group="server")
    port: int = option(8000, "TCP port to listen on", group="server")
    device: str = option("auto", "compute device: auto, cpu, cuda or cuda:N", group="encoder")
    precision: str = option(DEFAULT_PRECISION, "autocast precision on CUDA (CPU: fp32); bf16 cannot overflow "
                                               "like fp16", choices=PRECISIONS, group="encoder")
    batch_size: int = option(8, "query images per forward pass: waiting queries are encoded together in "
                                "batches of at most this many", group="encoder")
    queue_limit: int = option(32, "query images waiting for the encoder at most; past it a request gets 503 "
                                  "with Retry-After", group="limits")
    top_k: int = option(10, "results returned per query when a request names no k", group="limits")
    max_k: int = option(100, "the largest k a request may ask for", group="limits")
    max_upload_mb: float = option(10.0, "the largest request body in MB (uploads, JSON)", group="limits")
    max_image_pixels: int = option(40_000_000, "the largest decoded image in pixels (width x height): a bigger one "
                                         "is refused as a decompression bomb before it is decoded", group="limits")
    nprobe: Optional[int] = option(None, "IVF cells to search (None: the index's own)", group="encoder")
    ef_search: Optional[int] = option(None, "HNSW search breadth (None: the index's own)", group="encoder")
    thumb_size: int = option(256, "side in pixels of the thumbnails served at /items/ID/image", group="server")
    no_progress: bool = option(False, "turn the progress bars off")
    log_level: str = option("INFO", "logging verbosity (DEBUG, INFO, WARNING)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def check(self) -> None:
        """Raise ``ValueError`` naming the flag when a setting cannot work."""
        if not self.index and not self.clusters:
            raise ValueError("give --index (an index folder to search) and/or --clusters (a cluster output to browse)")
        for flag, value, low in (("--port", self.port, 0), ("--batch-size", self.batch_size, 1),
                                 ("--queue-limit", self.queue_limit, 1), ("--top-k", self.top_k, 1),
                                 ("--max-k", self.max_k, 1), ("--max-image-pixels", self.max_image_pixels, 1),
                                 ("--thumb-size", self.thumb_size, 16)):
            if value < low:
                raise ValueError(f"{flag} must be at least {low} (got {value})")
        if self.top_k > self.max_k:
            raise ValueError(f"--top-k {self.top_k} is above --max-k {self.max_k}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"--max-upload-mb must be positive (got {self.max_upload_mb})")
