"""Deprecated location of the ``export/`` format: it lives in ``unicom.formats.export`` now.

Kept so that ``from unicom.export import save_export`` (tests, user scripts) keeps working.
"""
from .formats.export import (
                             CONFIG_FILE,
                             EXPORT_FORMAT,
                             EXPORT_VERSION,
                             MODEL_FILE,
                             arch_of,
                             build_from_arch,
                             load_export_state,
                             read_export_config,
                             save_export,
)

__all__ = ["CONFIG_FILE", "EXPORT_FORMAT", "EXPORT_VERSION", "MODEL_FILE", "arch_of", "build_from_arch",
           "load_export_state", "read_export_config", "save_export"]
