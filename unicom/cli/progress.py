"""Progress bars: one rule for every long loop of the toolkit."""
from __future__ import annotations

from typing import Any


def progress_bar(show: bool, **kwargs: Any):
    """A tqdm bar (with rate and ETA) when ``show`` and stderr is a terminal. Otherwise it is
    disabled (``bar.disable`` is True), so that log files and batch jobs get no carriage-return
    updates; callers then log a line now and then instead. ``kwargs`` are tqdm's."""
    from tqdm import tqdm

    return tqdm(disable=None if show else True, dynamic_ncols=True, **kwargs)
