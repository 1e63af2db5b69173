"""The head's defaults and value rules, free of torch so that configs can use them (``--help``
of ``unicom-train`` imports this and must stay fast)."""
from __future__ import annotations

DEFAULT_SAMPLE_RATE = 0.1      # Partial FC / Unicom: 10% of the classes per step


def check_rate(name: str, value) -> float:
    """``value`` as a sampling rate in (0, 1]; a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return float(value)
