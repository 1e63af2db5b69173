"""benchmarks/serve_load.py end to end on the tests' sample index: a short load, every check met."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def serve_index(sample_set, tiny_export, tmp_path):
    """unicom-embed's OUTPUT for the sample shards (a flat index)."""
    from unicom.embed.cli import main as embed_main

    root, _ = sample_set
    out = tmp_path / "index"
    assert embed_main(["--model", str(tiny_export), "--data", str(root / "shards"), "--output", str(out), "--workers",
                       "0", "--index-type", "flat", "--no-progress", "--log-level", "WARNING"]) == 0
    return out


@pytest.mark.slow
def test_serve_load_runs_two_short_rounds_and_meets_its_checks(serve_index, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--index", str(serve_index),
                           "--work", str(tmp_path / "work"), "--clients", "3", "--seconds", "1.5",
                           "--bad-share", "0.3"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "work" / "serve_load.json").read_text())
    assert len(data["rounds"]) == 2 and all(data["checks"].values())
    assert all(r["bad"] > 0 and r["good"] > 0 and r["5xx"] == 0 for r in data["rounds"])
    assert "p99 ms" in proc.stdout and (tmp_path / "work" / "serve_load.png").stat().st_size > 1000
