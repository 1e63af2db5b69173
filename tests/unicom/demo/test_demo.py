"""A scaled-down `make demo`, end to end through the real make targets and unicom-eval."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unicom.sample_data import generate_sample_set

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(600)  # the demo's own subprocess limit is 400 s: the suite's 300 s must not cut it short
def test_scaled_down_demo_runs_end_to_end(tmp_path):
    sample = tmp_path / "sample"
    generate_sample_set(str(sample), seed=0, per_concept=10, heldout_per_concept=8, shard_size=120, image_size=64)
    out = tmp_path / "demo"
    venv = Path(sys.prefix)
    clip = tmp_path / "clip" / "tiny.safetensors"
    cmd = [sys.executable, "-m", "unicom.demo", "--make", f"make -s VENV={venv}", "--sample-dir", str(sample),
           "--output", str(out), "--num-clusters", "12", "--benchmarks", "sample", "--visualize", "4",
           "--clip-pretrained", str(clip), "--clip-args", "--epochs 2 --batch-size 32", "--threads", "1",
           "--train-args", "data.epochs=1 data.batch_size=32 train.ckpt_every=1000",
           "--eval-args", "--no-progress --workers 0"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    assert "purity" in report and "sample R@1" in report and "Tiny CLIP pretraining" in report
    data = json.loads((out / "report.json").read_text())
    assert [c["clip"] for c in data["clusters"]] == ["pretrained", "random init"]
    assert all(0.0 <= c["nmi"] <= 1.0 and 0.0 < c["purity"] <= 1.0 for c in data["clusters"])
    assert data["loss"]["steps"] >= 1
    rows = {r["encoder"]: r for r in data["retrieval"]}
    # the supervised row needs `unicom-train --dataset`; without it the demo says why it is missing
    has_dataset = "--dataset" in subprocess.run([sys.executable, "-m", "unicom.train.cli", "--help"], cwd=REPO,
                                                capture_output=True, text=True).stdout
    assert set(rows) == {"trained", "untrained", "clip"} | ({"supervised"} if has_dataset else set())
    assert has_dataset or any("supervised upper bound is skipped" in n for n in data["notes"])
    assert all(0.0 <= rows[e]["sample R@1"] <= 1.0 for e in rows)
    assert clip.is_file() and json.loads(clip.with_suffix(".json").read_text())["steps"] >= 2
    for png in ("retrieval_sample.png", "cluster/cluster_sizes.png", "train/loss.png"):
        assert (out / png).stat().st_size > 1000, png
    assert (out / "train" / "export" / "model.safetensors").is_file()
    _check_make_serve_default(out)


def _check_make_serve_default(out):
    """The demo leaves an index that `make serve` serves, with the pseudo classes of OUT/cluster."""
    from fastapi.testclient import TestClient

    from unicom.serve.app import create_app
    from unicom.serve.config import ServeConfig

    cfg = ServeConfig(index=str(out / "index"), clusters=str(out / "cluster"), device="cpu", no_progress=True)
    with TestClient(create_app(cfg)) as client:
        health = client.get("/healthz").json()
        assert health["index"]["items"] > 0 and health["clusters"]["classes"] == 12
        assert health["index"]["model"] == str((out / "train" / "export").resolve())
        hits = client.get("/items/0/neighbours?k=3").json()["results"]
        assert hits[0]["id"] == 0 and hits[0]["caption"]


def test_demo_flags_keep_their_old_names():
    from unicom.demo.run import parse_args

    a = parse_args(["--out", "x", "--k", "5"])
    assert (a.output, a.num_clusters) == ("x", 5)
    a = parse_args(["--output", "y", "--num-clusters", "7"])
    assert (a.output, a.num_clusters, a.benchmarks) == ("y", 7, ["sample"])
