"""Prometheus metrics of one app (its own registry, so two apps in one process do not mix).

  unicom_serve_requests_total{route, method, status}   requests answered
  unicom_serve_errors_total{route, kind}               error responses by kind (bad_image, overloaded, …)
  unicom_serve_request_seconds{route}                  whole-request latency
  unicom_serve_stage_seconds{stage}                    decode (bytes → image), encode (images → vectors,
                                                       per batch), search (faiss + metadata)
  unicom_serve_encode_batch_images                     images per encoder batch
  unicom_serve_queue_images                            images waiting for or in the encoder now
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# latency buckets in seconds: 1 ms to 10 s, finer where a CPU query lands
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("decode", "encode", "search")


class Metrics:
    """The service's counters and histograms, in ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("unicom_serve_requests", "requests answered", ["route", "method", "status"],
                                registry=r)
        self.errors = Counter("unicom_serve_errors", "error responses by kind", ["route", "kind"], registry=r)
        self.latency = Histogram("unicom_serve_request_seconds", "whole-request latency", ["route"],
                                 buckets=BUCKETS, registry=r)
        self.stage = Histogram("unicom_serve_stage_seconds", "time per stage: decode, encode, search", ["stage"],
                               buckets=BUCKETS, registry=r)
        self.batch = Histogram("unicom_serve_encode_batch_images", "images per encoder batch",
                               buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue = Gauge("unicom_serve_queue_images", "images waiting for or in the encoder", registry=r)
        for s in STAGES:  # every stage shows up in /metrics from the start, at zero
            self.stage.labels(stage=s)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Observe the block's wall time under ``stage``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(stage=stage).observe(time.perf_counter() - t0)

    def render(self) -> bytes:
        """The text exposition format (``GET /metrics``)."""
        return generate_latest(self.registry)
