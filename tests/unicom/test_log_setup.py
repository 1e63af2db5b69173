"""One logging set-up: every command logs in the same format to the same stream (stderr)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unicom.cli.log_setup import log_format

ROOT = Path(__file__).resolve().parents[2]
LINE = r"\d\d:\d\d:\d\d {who} {level} {logger}: {message}"


def _log(prog: str, level: str, rank: str = "") -> subprocess.CompletedProcess:
    """A fresh process (no test runner's handlers): set up, then log from the toolkit and a library."""
    code = (f"from unicom.cli.log_setup import setup_logging; import logging; setup_logging({prog!r}, {level!r}); "
            f"setup_logging({prog!r}, {level!r}); "  # a second call must not add a second handler
            "logging.getLogger('unicom.train.loop').info('step 1'); "
            "logging.getLogger('clustering.kmeans').debug('iteration 1'); "
            "logging.getLogger('retrieval_eval.pipeline').warning('slow'); "
            "logging.getLogger('faiss').info('library chatter'); print('result')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RANK", None)
    if rank:
        env["RANK"] = rank
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_records_go_to_stderr_in_one_format_and_results_to_stdout():
    out = _log("unicom-train", "info")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "result\n"
    lines = out.stderr.splitlines()
    assert len(lines) == 2, lines  # no DEBUG at INFO, no library INFO, one handler
    assert re.fullmatch(LINE.format(who="unicom-train", level="INFO", logger="unicom.train.loop", message="step 1"),
                        lines[0])
    assert re.fullmatch(LINE.format(who="unicom-train", level="WARNING", logger="retrieval_eval.pipeline",
                                    message="slow"), lines[1])
    debug = _log("unicom-cluster", "DEBUG").stderr.splitlines()
    assert any(re.fullmatch(LINE.format(who="unicom-cluster", level="DEBUG", logger="clustering.kmeans",
                                        message="iteration 1"), x) for x in debug), debug


def test_other_ranks_log_warnings_only_and_say_their_rank():
    lines = _log("unicom-train", "INFO", rank="3").stderr.splitlines()
    assert len(lines) == 1 and re.fullmatch(LINE.format(who=re.escape("unicom-train[rank 3]"), level="WARNING",
                                                        logger="retrieval_eval.pipeline", message="slow"), lines[0])
    assert log_format("p", 0) == log_format("p") and "[rank 2]" in log_format("p", 2)


def test_a_bad_level_is_refused():
    from unicom.cli.log_setup import setup_logging

    with pytest.raises(ValueError, match="log level must be one of"):
        setup_logging("prog", "LOUD")


def test_no_command_configures_logging_on_its_own():
    # every command goes through unicom.cli.log_setup.setup_logging
    offenders = []
    for package in ("unicom", "clustering", "retrieval_eval"):
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if rel != Path("unicom/cli/log_setup.py") and "basicConfig" in path.read_text():
                offenders.append(str(rel))
    assert not offenders, offenders
