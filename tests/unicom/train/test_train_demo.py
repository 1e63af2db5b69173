"""(slow) The `make train` preset: the full sample set, on this CPU, within 5 minutes, and the
trained encoder retrieves held-out concepts better than the untrained one."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unicom.train.support import write_concept_labels

ROOT = Path(__file__).resolve().parents[3]


def heldout_recall_at_1(export_dir, heldout_dir, trained: bool = True) -> float:
    """R@1 over the held-out concepts (every image a query against all the others)."""
    from PIL import Image

    from unicom.data.transforms import eval_transform
    from unicom.formats.export import load_export_state, read_export_config
    from unicom.models.arch import build_from_arch

    cfg = read_export_config(export_dir)
    torch.manual_seed(0)
    model = build_from_arch(cfg["arch"])
    if trained:
        model.load_state_dict(load_export_state(export_dir))
    model.eval()
    tf = eval_transform(cfg["image_size"], cfg["mean"], cfg["std"])
    paths = sorted(Path(heldout_dir).glob("*/*.jpg"))
    labels = np.array([p.parent.name for p in paths])
    with torch.no_grad():
        feats = torch.nn.functional.normalize(model(torch.stack([tf(Image.open(p)) for p in paths])), dim=1)
    sim = feats @ feats.t()
    sim.fill_diagonal_(-2.0)
    return float((labels[sim.argmax(1).numpy()] == labels).mean())


@pytest.mark.slow
def test_demo_preset_trains_within_five_minutes_and_helps_heldout_retrieval(tmp_path):
    from unicom.sample_data import generate_sample_set

    generate_sample_set(str(tmp_path / "sample"), seed=0)  # the `make sample` set (2,160 images, 96 px)
    labels = write_concept_labels(tmp_path / "sample" / "shards", tmp_path / "cluster")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "unicom.train.cli", "--config", str(ROOT / "configs" / "demo.yaml"),
                    "--data", str(tmp_path / "sample" / "shards"), "--labels", str(labels),
                    "--output", str(tmp_path / "run"), "train.progress=false"],
                   check=True, cwd=ROOT, timeout=600)
    wall = time.time() - t0
    assert wall < 300, f"make train's preset took {wall:.0f} s"
    before = heldout_recall_at_1(tmp_path / "run" / "export", tmp_path / "sample" / "heldout", trained=False)
    after = heldout_recall_at_1(tmp_path / "run" / "export", tmp_path / "sample" / "heldout")
    assert after > before + 0.03, (before, after)
