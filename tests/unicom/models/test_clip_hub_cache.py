"""open_clip weights by pretrained tag and by ``hf-hub:`` name, read offline from a Hugging Face
cache that the test builds itself (``models--ORG--NAME/snapshots/REV/…`` + ``refs/main``),
with ``HF_HUB_CACHE`` pointed there and ``HF_HUB_OFFLINE=1``. The loads run in a child process
so that huggingface_hub reads those variables at import, as it does for a user."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from unicom.models.clip_loader import DEMO_MODEL, create_clip

ROOT = Path(__file__).resolve().parents[3]
REV = "0123456789abcdef0123456789abcdef01234567"

CHILD = r"""
import sys, torch, open_clip
from open_clip.pretrained import _PRETRAINED, _pcfg
from unicom.models.clip_loader import DEMO_MODEL, create_clip, register_configs

ref = torch.load(sys.argv[1], weights_only=True)

def same(model):
    sd = model.state_dict()
    return all(torch.equal(sd[k], v) for k, v in ref.items())

register_configs()
# a pretrained tag of the registry (open_clip has no public call to add one; real tags such as
# ViT-B-32/laion2b_s34b_b79k take this same path, with 600 MB weights)
_PRETRAINED[DEMO_MODEL] = {"unicom_test": _pcfg(hf_hub="unicom-test/tiny-clip/")}
checks = {
    "tag": same(create_clip(DEMO_MODEL, "unicom_test")[0]),
    "hf-hub pretrained": same(create_clip(DEMO_MODEL, "hf-hub:unicom-test/tiny-clip")[0]),
    "hf-hub model": same(create_clip("hf-hub:unicom-test/tiny-clip", "openai")[0]),
}
try:
    create_clip(DEMO_MODEL, "hf-hub:unicom-test/not-cached")
    checks["missing is an error"] = False
except ValueError as exn:
    checks["missing is an error"] = "HF_HUB_OFFLINE" in str(exn) and "not-cached" in str(exn)
print(checks)
sys.exit(0 if all(checks.values()) else 1)
"""


def _hf_cache(root: Path, repo: str, files: dict) -> Path:
    """The Hugging Face hub cache layout for ``repo`` at one revision: ``refs/main`` names it."""
    d = root / ("models--" + repo.replace("/", "--"))
    snap = d / "snapshots" / REV
    snap.mkdir(parents=True)
    for name, write in files.items():
        write(snap / name)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(REV)
    return d


def test_tags_and_hub_names_load_offline_from_the_hugging_face_cache(tmp_path):
    import open_clip

    torch.manual_seed(3)
    model = create_clip(DEMO_MODEL, "none")[0]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # weights unlike the seeded random init
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    ref = tmp_path / "ref.bin"
    torch.save(sd, ref)
    cfg = {"model_cfg": open_clip.get_model_config(DEMO_MODEL), "preprocess_cfg": {}}
    cache = tmp_path / "hf" / "hub"
    _hf_cache(cache, "unicom-test/tiny-clip", {
        "open_clip_pytorch_model.bin": lambda p: torch.save(sd, p),
        "open_clip_config.json": lambda p: p.write_text(json.dumps(cfg)),
    })
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", CHILD, str(ref)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
