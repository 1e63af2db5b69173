"""``unicom-eval`` end to end on the offline benchmarks (digits, sample) with small encoders."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from retrieval_eval.cli import main

FAST = ["--device", "cpu", "--workers", "0", "--no-progress"]


def _read(path):
    return json.loads(path.read_text())


def test_digits_with_an_exported_model(tiny_export, tmp_path, capsys):
    out = tmp_path / "digits.json"
    rc = main(["--benchmark", "digits", "--model", str(tiny_export), "--output", str(out), "--visualize", "3",
               "--visualize-k", "5", *FAST])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "R@1" in printed and "MAP@R" in printed
    res = _read(out)
    assert res["benchmark"] == "digits" and res["encoder"]["kind"] == "export"
    assert res["encoder"]["embed_dim"] == 32
    assert res["sizes"]["queries"] == 1797 and res["sizes"]["all_vs_all"] and res["sizes"]["classes"] == 10
    assert res["skipped"]["total"] == 0
    m = res["metrics"]
    assert set(m) >= {"R@1", "R@2", "R@4", "R@8", "MAP@R", "RP"}
    assert 0.1 < m["R@1"] <= m["R@2"] <= m["R@4"] <= m["R@8"] <= 1.0  # far above chance (0.1) even untrained
    assert 0.0 < m["MAP@R"] <= m["RP"] <= 1.0
    png = tmp_path / "digits.png"
    assert res["visualization"] == str(png)
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] > 0  # 3 rows of 1 + 5 tiles


def test_sample_with_open_clip_random_init(sample_set, tmp_path):
    root, manifest = sample_set
    out = tmp_path / "sample.json"
    rc = main(["--benchmark", "sample", "--data-root", str(root), "--clip-model", "TinyCLIP-demo",
               "--clip-pretrained", "none", "--output", str(out), "--recall-at", "1,2", "5", *FAST])
    assert rc == 0
    res = _read(out)
    assert res["encoder"]["kind"] == "open_clip"
    assert res["sizes"]["classes"] == len(manifest["heldout_concepts"])
    assert res["settings"]["ks"] == [1, 2, 5]
    assert set(res["metrics"]) >= {"R@1", "R@2", "R@5", "MAP@R"}


def test_module_entry_point_as_the_makefile_calls_it(sample_set, tiny_export, tmp_path):
    root, _ = sample_set
    out = tmp_path / "eval" / "sample.json"
    proc = subprocess.run([sys.executable, "-m", "retrieval_eval.cli", "--benchmark", "sample", "--data-root",
                           str(root), "--model", str(tiny_export), "--output", str(out), "--visualize", "2",
                           "--visualize-out", str(tmp_path / "pic.png"), *FAST],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "R@1" in proc.stdout
    assert out.is_file() and (tmp_path / "pic.png").is_file()
    assert _read(out)["metrics"]["R@1"] > 0


def test_precomputed_embeddings_reproduce_the_encoder_run(tiny_export, tmp_path):
    first, emb = tmp_path / "a.json", tmp_path / "emb.npy"
    assert main(["--benchmark", "digits", "--model", str(tiny_export), "--output", str(first),
                 "--save-embeddings", str(emb), *FAST]) == 0
    second = tmp_path / "b.json"
    assert main(["--benchmark", "digits", "--embeddings", str(emb), "--output", str(second), *FAST]) == 0
    assert _read(second)["metrics"] == _read(first)["metrics"]
    assert _read(second)["encoder"]["kind"] == "embeddings"
    # the metrics alone: embeddings plus a label file, no benchmark
    from sklearn.datasets import load_digits

    labels = tmp_path / "labels.npy"
    np.save(labels, load_digits().target)
    third = tmp_path / "c.json"
    assert main(["--embeddings", str(emb), "--labels", str(labels), "--output", str(third), *FAST]) == 0
    assert _read(third)["metrics"] == _read(first)["metrics"]


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    rc = main(["--benchmark", "cub", "--data-root", str(tmp_path), "--embeddings", str(tmp_path / "x.npy"), *FAST])
    assert rc == 1
    err = capsys.readouterr().err
    assert "images.txt" in err and "cub_200_2011" in err.lower() and "caltech" in err


@pytest.mark.parametrize("argv", [
    ["--benchmark", "digits"],                                         # no encoder
    ["--benchmark", "digits", "--model", "x", "--clip-model", "y"],    # two encoders
    ["--benchmark", "digits", "--clip-model", "TinyCLIP-demo"],        # no --clip-pretrained
    ["--model", "x"],                                                  # no benchmark
])
def test_argument_errors(argv, capsys):
    assert main(argv) == 2
    assert "unicom-eval:" in capsys.readouterr().err


def test_no_readable_image_is_a_clear_error(tmp_path, tiny_export, capsys):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.jpg").write_bytes(b"not an image")
    rc = main(["--benchmark", "image_folder", "--data-root", str(tmp_path), "--model", str(tiny_export), *FAST])
    assert rc == 1
    assert "none of the 2 images could be read" in capsys.readouterr().err


def test_output_folder_holds_results_per_class_and_a_page_sized_labelled_picture(sample_set, tiny_export, tmp_path):
    root, _ = sample_set
    out = tmp_path / "run"
    assert main(["--benchmark", "sample", "--data-root", str(root), "--model", str(tiny_export), "--output", str(out),
                 "--visualize", "8", "--visualize-k", "8", *FAST]) == 0
    res = _read(out / "results.json")
    assert res["visualization"] == str(out / "retrieval.png") and res["per_class"] == str(out / "per_class.json")
    classes = _read(out / "per_class.json")["classes"]
    assert sum(c["queries"] for c in classes) == res["sizes"]["queries"] and all("name" in c for c in classes)
    size = (out / "retrieval.png").stat().st_size
    assert size < 400_000, size
    with Image.open(out / "retrieval.png") as im:
        assert im.width >= 9 * 104 and im.height >= 8 * 104  # 8 rows of query + 8 results, tiles readable
