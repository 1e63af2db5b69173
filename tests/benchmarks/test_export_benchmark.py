"""benchmarks/export.py on the tiny ViT: the three runners are timed, the table printed, the
JSON and the PNG written (no wall time is asserted)."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("bench_export", REPO / "benchmarks" / "export.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # exports a graph: the ONNX exporter alone takes seconds to import
def test_export_benchmark_writes_table_json_and_png(tmp_path, capsys):
    bench = _script()
    argv = ["--models", "tiny", "--seconds", "0.05", "--rounds", "2", "--batch-size", "4", "--output", str(tmp_path)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "| ViT-Tiny/8@32 (32 px, " in out and "onnxruntime fp32" in out
    data = json.loads((tmp_path / "export.json").read_text())
    row = data["rows"][0]
    assert set(row["images_per_s"]) == set(bench.RUNNERS) and all(v > 0 for v in row["images_per_s"].values())
    assert row["onnx_min_cosine"] >= 0.9999 and row["parity_min_cosine"] >= 0.9999
    assert (tmp_path / "export.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_model_is_one_line(capsys):
    assert _script().main(["--models", "b99"]) == 2
    assert "unknown --models 'b99'" in capsys.readouterr().err
