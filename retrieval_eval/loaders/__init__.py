"""Benchmark loaders: one module per dataset, each reading the official downloaded layout."""
from .base import GLDV2, LABELLED, REVISITOP, Benchmark, DatasetNotFoundError, ImageSet, UnreadableDataError
from .registry import available_benchmarks, load_benchmark

__all__ = ["Benchmark", "ImageSet", "DatasetNotFoundError", "UnreadableDataError", "LABELLED", "REVISITOP",
           "GLDV2", "available_benchmarks", "load_benchmark"]
