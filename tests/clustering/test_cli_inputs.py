"""`unicom-cluster` on an image folder (no captions: image features alone, said in the report),
the renamed flags and their deprecated aliases, and a --help that imports nothing heavy."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clustering.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_an_image_folder_is_clustered_from_its_images_alone(sample_set, tmp_path, monkeypatch):
    import clustering.inputs

    monkeypatch.setattr(clustering.inputs, "FILES_PER_PSEUDO_SHARD", 30)  # several pseudo-shards, 2 workers
    root, manifest = sample_set
    out = tmp_path / "run"
    rc = main(["--data", str(root / "heldout"), "--output", str(out), "--num-clusters", "10",
               "--clip-model", "TinyCLIP-demo", "--clip-pretrained", "none", "--workers", "2",
               "--batch-size", "32", "--no-progress", "--grid-classes", "4", "--grid-images", "3"])
    assert rc == 0
    n = sum(manifest["heldout_counts"].values())
    names = [f"images-{i:05d}" for i in range((n + 29) // 30)]
    keys = [k for name in names for k in (out / "features" / f"{name}.keys").read_text().split("\n")[:-1]]
    assert keys == sorted(str(p.relative_to(root / "heldout")) for p in (root / "heldout").rglob("*.jpg"))
    labels = np.concatenate([np.load(out / "labels" / f"{name}.npy") for name in names])
    assert labels.shape == (n,) and labels.min() >= 0 and labels.max() < 10
    assert np.load(out / "labels" / "class_sizes.npy").sum() == n
    meta = json.loads((out / "features" / "meta.json").read_text())
    assert meta["modality"] == "image" and meta["text_weight"] == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["features"].startswith("image features alone")
    assert f"{n} of {n} images have no caption" in rep["features"]
    assert rep["cluster_sizes"]["samples"] == n
    grid = out / "class_grid.png"
    assert rep["pictures"]["class_grid"] == grid.name
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < grid.stat().st_size < 600_000


def test_captions_beside_the_images_are_used(sample_set, tmp_path):
    """A folder in img2dataset's files layout (NAME.jpg + NAME.txt) keeps both modalities."""
    from clustering.config import ExtractConfig
    from clustering.inputs import image_only_note, resolve_data

    root, _ = sample_set
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, src in enumerate(sorted((root / "heldout").rglob("*.jpg"))[:6]):
        (folder / f"{i}.jpg").write_bytes(src.read_bytes())
        (folder / f"{i}.txt").write_text(f"a picture of {src.parent.name}")
    inputs, names = resolve_data(str(folder))
    cfg = ExtractConfig()
    assert names == ["images"] and image_only_note(inputs, cfg) is None and cfg.modality == "both"
    (folder / "0.txt").unlink()
    assert "1 of 6 images have no caption" in image_only_note(inputs, cfg) and cfg.modality == "image"
    with pytest.raises(ValueError, match="--modality text"):
        image_only_note(inputs, ExtractConfig(modality="text"))


def test_old_flag_names_still_work_and_warn(capsys):
    new = build_parser().parse_args(["--data", "d", "--output", "o", "--num-clusters", "7", "--clip-model", "M",
                                     "--clip-pretrained", "none"])
    old = build_parser().parse_args(["--data", "d", "--out", "o", "--k", "7", "--model", "M", "--pretrained", "none"])
    assert vars(new) == vars(old)
    err = capsys.readouterr().err
    for o, n in (("--out", "--output"), ("--k", "--num-clusters"), ("--model", "--clip-model"),
                 ("--pretrained", "--clip-pretrained")):
        assert f"unicom-cluster: warning: {o} is deprecated, use {n}" in err


@pytest.mark.parametrize("module", ["clustering.cli", "unicom.embed.cli", "unicom.embed.search_cli",
                                    "unicom.sample_data.cli"])
def test_every_flag_has_help_and_shows_its_default(module):
    import importlib

    parser = importlib.import_module(module).build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
            if not action.required:
                assert f"{action.option_strings[0]}" in text and "%(default)" not in action.help
    assert text.count("(default:") >= len([a for a in parser._actions if a.option_strings and not a.required]) - 1


def test_cluster_help_shows_the_paper_defaults():
    text = build_parser().format_help()
    assert "(default: 1000000)" in text and "(default: openai)" in text and "(default: ViT-L-14)" in text


@pytest.mark.parametrize("module", ["clustering.cli", "unicom.embed.cli", "unicom.embed.search_cli",
                                    "unicom.sample_data.cli"])
def test_help_imports_nothing_heavy(module):
    code = (f"import sys, contextlib, io\nfrom {module} import build_parser\nbuild_parser().format_help()\n"
            "heavy = [m for m in ('torch', 'numpy', 'faiss', 'open_clip', 'matplotlib', 'PIL') if m in sys.modules]\n"
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_an_image_folder_piece_is_stamped_and_extracted_again_when_an_image_changes(sample_set, tiny_clip, tmp_path,
                                                                                       caplog):
    """Image-folder pieces get the same "done" records as shards: a re-run skips a piece whose
    files are unchanged and extracts it again when one of its images changed."""
    from clustering.extract import ExtractConfig, extract_features
    from clustering.inputs import resolve_data
    from unicom.formats import features as ff
    from unicom.runtime.distributed import init_distributed

    root, _ = sample_set
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, src in enumerate(sorted((root / "heldout").rglob("*.jpg"))[:10]):
        (folder / f"{i}.jpg").write_bytes(src.read_bytes())
    inputs, names = resolve_data(str(folder), chunk=4)
    assert names == ["images-00000", "images-00001", "images-00002"]
    out = tmp_path / "run"
    cfg = ExtractConfig(model="TinyCLIP-demo", pretrained="none", modality="image", workers=0, progress=False)

    def extract():
        return extract_features(inputs, str(out), cfg, init_distributed("cpu"), model_bundle=tiny_clip)

    assert sorted(extract().written) == names
    rec = ff.read_record(ff.features_dir(out), "images-00001")
    assert rec["samples_read"] == 4 and rec["input"]["files"] == 4
    assert extract().written == []                       # unchanged: every piece is done
    with open(folder / "5.jpg", "ab") as f:              # an image of the second piece changes
        f.write(b"\0")
    with caplog.at_level("WARNING", logger="clustering.extract"):
        assert extract().written == ["images-00001"]
    assert "images-00001 is extracted again: its input changed" in caplog.text


@pytest.mark.parametrize("module", ["clustering.cli", "unicom.embed.cli"])
def test_a_busy_folder_is_refused_before_any_heavy_import(module, tmp_path):
    """The lock is taken before torch, faiss or open_clip are imported, so that a second job
    into a folder in use is refused within a second or two, not after the imports."""
    from unicom.cli.run_lock import lock_output_dir

    out = tmp_path / "run"
    args = ["--data", str(tmp_path), "--output", str(out), "--model", "x"] if module == "unicom.embed.cli" else \
        ["--data", str(tmp_path), "--output", str(out), "--clip-pretrained", "none"]
    code = (f"import sys\nfrom {module} import main\nrc = main({args!r})\n"
            "print([m for m in ('torch', 'faiss', 'open_clip') if m in sys.modules])\nsys.exit(rc)")
    with lock_output_dir(out, "unicom-test"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                           env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert r.returncode == 2, r.stderr
    assert r.stdout.strip() == "[]"
    assert f"error: {out} is in use by unicom-test (pid " in r.stderr and r.stderr.count("\n") == 1
