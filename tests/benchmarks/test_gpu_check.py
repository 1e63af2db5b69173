"""benchmarks/gpu_check.sh on a machine without a GPU: says so, writes its table and JSON, exits 0."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script runs every CUDA step")
def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path / "gc")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU on this machine" in proc.stdout
    data = json.loads((tmp_path / "gc" / "gpu_check.json").read_text())
    assert data["no_gpu"] is True and data["steps"] == []
    assert "nothing was measured" in (tmp_path / "gc" / "gpu_check.md").read_text()


def test_gpu_check_report_reads_the_steps(tmp_path):
    """The table builder on a real 2-process check (gloo, CPU) and a failed step."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "nccl_2proc.json").write_text(json.dumps({
        "backend": "gloo", "device": "cpu", "world_size": 2, "loss_rel_err": 0.0, "emb_grad_rel_err": 2e-15,
        "centre_grad_rel_err": 1e-16, "ok": True}))
    (raw / "steps.tsv").write_text("nccl_2proc\tpassed\t12\t{}\nkmeans_gpu\tfailed\t3\tRuntimeError: boom\n")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check_report.py"), str(raw), str(tmp_path)],
                   check=True, capture_output=True, text=True)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "gloo on cpu: match" in md and "| failed | 3 | RuntimeError: boom |" in md


def test_nccl_check_script_two_processes_match_one_on_the_cpu(tmp_path):
    """The 2-process check gpu_check.sh runs with NCCL, here with gloo on the CPU."""
    from tests.conftest import run_ranks

    out = tmp_path / "r.json"
    run_ranks(REPO / "benchmarks" / "nccl_check.py", ["--device", "cpu", "--output", out], timeout=180)
    r = json.loads(out.read_text())
    assert r["ok"] and r["backend"] == "gloo" and r["world_size"] == 2
    assert max(r["loss_rel_err"], r["emb_grad_rel_err"], r["centre_grad_rel_err"]) < 1e-9
