"""``unicom-index``: help without heavy imports, one-line errors, a build through the command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from unicom.index.cli import build_parser
from unicom.index.cli import main as index_main

ROOT = Path(__file__).resolve().parents[3]


def test_help_imports_nothing_heavy_and_every_flag_has_help():
    code = ("import sys\nfrom unicom.index.cli import build_parser\nbuild_parser().format_help()\n"
            "print([m for m in ('torch', 'numpy', 'faiss') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    sub = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001  (argparse keeps them there)
    for parser in sub.values():
        for action in parser._actions:  # noqa: SLF001
            if action.option_strings and action.dest != "help":
                assert action.help, action.option_strings


def test_build_through_the_command_and_a_bad_spec_in_one_line(collection, tmp_path, capsys):
    root, _, _ = collection
    assert index_main(["build", "--features", str(root), "--output", str(tmp_path / "bad"), "--index-type",
                       "IVF8,PQ5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unicom-index: error: --index-type 'IVF8,PQ5' is not a faiss index_factory string") \
        and "\n" not in err
    assert index_main(["build", "--features", str(root), "--output", str(tmp_path / "ok"), "--index-type", "hnsw",
                       "--hnsw-m", "8", "--ef-search", "24", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "ok" / "index.json").read_text())
    assert meta["factory"] == "HNSW8" and meta["search_params"] == {"efSearch": 24}
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert report["target_recall"] is None and report["search_params"] == {"efSearch": 24}
