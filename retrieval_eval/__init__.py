"""Retrieval evaluation with faiss: benchmark loaders, metrics, exact kNN, reports and pictures.

    import retrieval_eval
    results = retrieval_eval.evaluate("runs/train/export", "sample", "data/sample")
    retrieval_eval.evaluate_embeddings(embeddings, labels)         # the metrics alone
    retrieval_eval.metrics.recall_at_k(neighbour_labels, query_labels, [1, 2, 4, 8])

``unicom-eval`` (``python -m retrieval_eval``) is the command line. Every submodule loads
lazily, so the command line's ``--help`` imports neither numpy nor torch nor faiss.
"""
__all__ = ["evaluate", "evaluate_embeddings", "load_benchmark", "available_benchmarks", "metrics",
           "DatasetNotFoundError"]


def __getattr__(name):
    if name == "metrics":
        import importlib

        return importlib.import_module(".metrics", __name__)
    if name in ("evaluate", "evaluate_embeddings"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("load_benchmark", "available_benchmarks", "DatasetNotFoundError"):
        from . import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'retrieval_eval' has no attribute {name!r}")
