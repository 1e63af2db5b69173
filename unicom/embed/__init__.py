"""Embedding and similarity search: ``unicom-embed`` (images → features → faiss index) and
``unicom-search`` / ``Searcher`` (query images → top-k).

The names below are imported on first use, so that the CLIs' ``--help`` imports nothing heavy."""
from importlib import import_module

_HOME = {"EmbedResult": "embedder", "embed_images": "embedder", "embed_to_features": "embedder",
         "encode_batch": "embedder", "IndexDir": "index", "build_index": "index", "build_index_dir": "index",
         "choose_index_type": "index", "Hit": "search", "Searcher": "search"}

__all__ = sorted(_HOME)


def __getattr__(name):
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'unicom.embed' has no attribute {name!r}")
