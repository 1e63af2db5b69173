"""Deterministic LAION-style sample set with ground-truth concepts (``make sample``).

The generator is imported on first use, so that ``unicom-sample --help`` stays fast."""
__all__ = ["all_concepts", "generate_sample_set"]


def __getattr__(name):
    if name in __all__:
        from . import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'unicom.sample_data' has no attribute {name!r}")
