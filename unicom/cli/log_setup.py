"""One logging set-up for every command: the same format, the same stream, the same rank rule.

    setup_logging("unicom-train", "INFO")

Messages go to **stderr** (results, tables and summaries are printed to stdout, so a command's
stdout stays clean to pipe; tqdm bars also draw on stderr), one line each::

    12:03:44 unicom-train INFO unicom.train.loop: step 10/204 loss 13.9 …
    12:03:44 unicom-train[rank 1] WARNING unicom.train.data: …

The toolkit's own loggers (``unicom``, ``clustering``, ``retrieval_eval``) log at ``level`` on
rank 0 and at WARNING on the other ranks of a torchrun job (``RANK`` in the environment), so a
multi-process run prints one copy of its progress; other libraries log at WARNING.
Import-light (logging, os, sys only), like the rest of ``unicom.cli``.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Union

TOOLKIT_LOGGERS = ("unicom", "clustering", "retrieval_eval")
DATEFMT = "%H:%M:%S"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_format(prog: str, rank: Optional[int] = None) -> str:
    """The one line format: time, the command (with ``[rank N]`` off rank 0), level, logger, message."""
    who = prog if not rank else f"{prog}[rank {rank}]"
    return f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s"


def setup_logging(prog: str, level: Union[str, int] = "INFO", rank: Optional[int] = None) -> None:
    """Route every command's log records to stderr in the one format (see the module docstring).

    ``level``: a level name (any case) or number for the toolkit's loggers on rank 0; ``rank``:
    this process' rank (default: ``RANK`` from torchrun's environment, else 0).

    Like ``logging.basicConfig``, it installs its handler only when the root logger has no other
    handler: a program (or a test runner) that configured logging itself keeps its own handlers,
    and only the toolkit loggers' levels are set. Calling it again (a command run twice in one
    process) replaces its own handler instead of adding a second one."""
    if rank is None:
        rank = int(os.environ.get("RANK", "0") or 0)
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _MARK, False)]
    if len(ours) == len(root.handlers):  # nothing but (possibly) an earlier set-up of ours
        for h in ours:
            root.removeHandler(h)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(log_format(prog, rank), DATEFMT))
        setattr(handler, _MARK, True)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    for logger in TOOLKIT_LOGGERS:
        logging.getLogger(logger).setLevel(name if rank == 0 else "WARNING")


_MARK = "_unicom_setup_logging"
