"""Unicom: universal and compact representation learning for image retrieval.

``unicom.load(name_or_path)`` returns ``(model, transform)`` in eval mode, for the officially
released encoders (``unicom.available_models()``) and for encoders trained with this toolkit;
``unicom.export_model(name_or_path, folder)`` writes one as an ONNX or TorchScript graph.
Heavy submodules are imported lazily so that ``import unicom`` stays cheap.
"""
__version__ = "0.1.0"

__all__ = ["load", "available_models", "export_model", "__version__"]


def __getattr__(name):
    if name in ("load", "available_models"):
        from . import pretrained

        return getattr(pretrained, name)
    if name == "export_model":
        from .deploy.export import export_model

        return export_model
    raise AttributeError(f"module 'unicom' has no attribute {name!r}")
