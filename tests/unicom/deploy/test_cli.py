"""unicom-export on the command line: a run, and each bad input as one line before any work."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from unicom.deploy.cli import main
from unicom.deploy.export import export_model
from unicom.deploy.graph import ExportError
from unicom.deploy.runtime import MissingRuntimeError

ROOT = Path(__file__).resolve().parents[3]


def _one_line_error(capsys, argv, code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("unicom-export: error:") and "\n" not in err
    return err


def test_cli_exports_and_prints_the_record(demo_encoder, tmp_path, capsys):
    out = tmp_path / "ts"
    assert main(["--model", str(demo_encoder), "--format", "torchscript", "--output", str(out), "--dims", "64",
                 "--parity-images", "12", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "first 64 of 128" in text and "sha256 " in text and "min cosine 1.0000" in text
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "deploy.json", "model.torchscript.pt", "parity.json", "preprocess.json"]


@pytest.mark.parametrize("extra, message", [
    (["--dims", "999"], "--dims 999 is not possible: .* 128 dimensions"),
    (["--fp16", "--format", "torchscript"], "--fp16 makes a half-precision ONNX graph"),
    (["--pca-fit", "x"], "--pca-fit fits the projection of --dims D"),
    (["--dims", "8", "--pca-fit", "/no/such/set"], "--pca-fit /no/such/set: no such"),
    (["--parity-images", "5"], "needs more than 10 images"),
    (["--opset", "13"], "--opset 13 is too old"),
    (["--parity-data", "/no/such/folder"], "--parity-data /no/such/folder: no such"),
])
def test_bad_arguments_are_one_line(demo_encoder, tmp_path, capsys, extra, message):
    import re

    err = _one_line_error(capsys, ["--model", str(demo_encoder), "--output", str(tmp_path / "o"), *extra])
    assert re.search(message, err), err
    assert not (tmp_path / "o" / "deploy.json").exists()


def test_an_unknown_encoder_and_a_busy_folder(tmp_path, capsys):
    assert "no such file or directory" in _one_line_error(capsys, ["--model", str(tmp_path / "nope.pt"), "--output",
                                                                  str(tmp_path / "o")])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    err = _one_line_error(capsys, ["--model", "ViT-B/32", "--output", str(tmp_path / "busy")])
    assert "holds other files" in err


def test_pca_set_of_another_encoder_is_refused(demo_encoder, tiny_export, sample_set, tmp_path, capsys):
    from .support import embed_and_index

    other = embed_and_index(tiny_export, sample_set[0] / "heldout" / "digit_7", tmp_path / "other")
    err = _one_line_error(capsys, ["--model", str(demo_encoder), "--output", str(tmp_path / "o"), "--dims", "8",
                                   "--pca-fit", str(other)])
    assert "holds the embeddings of another encoder" in err and "unicom-embed --model" in err


def test_missing_onnxruntime_is_one_line(demo_onnx, demo_encoder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it raises on import
    err = _one_line_error(capsys, ["--model", str(demo_encoder), "--output", str(tmp_path / "o")])
    assert "needs onnxruntime: pip install 'unicom-toolkit[onnx]'" in err
    from unicom.embed.cli import main as embed_main

    assert embed_main(["--model", str(demo_onnx.directory), "--data", str(tmp_path), "--output",
                       str(tmp_path / "e")]) == 2
    assert "running an ONNX export needs onnxruntime" in capsys.readouterr().err
    with pytest.raises(MissingRuntimeError):
        from unicom.pretrained.load import load_encoder

        load_encoder(demo_onnx.directory)


class _Eigh(nn.Module):
    """An encoder using an operator without an ONNX translation (a symmetric eigensolver)."""

    image_size = 8
    embed_dim = 4

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y + torch.linalg.eigvalsh(y.T @ y + torch.eye(4)).sum()


def test_unsupported_operator_names_it(tmp_path):
    from unicom.data.transforms import eval_transform
    from unicom.models.encoders import module_encoder

    enc = module_encoder(_Eigh(), eval_transform(8), device="cpu")
    with pytest.raises(ExportError, match=r"operator aten\._linalg_eigh has no ONNX translation.*--format torchscript"):
        export_model(enc, tmp_path / "o", "onnx", parity_images=12, progress=False)


def test_import_unicom_stays_cheap_and_exposes_export_model():
    import unicom

    assert unicom.export_model is export_model and "export_model" in unicom.__all__
    code = "import sys, unicom; assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_dims_of_a_released_encoder_is_checked_before_its_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNICOM_CACHE", str(tmp_path / "cache"))
    err = _one_line_error(capsys, ["--model", "ViT-B/32", "--output", str(tmp_path / "o"), "--dims", "600"])
    assert "ViT-B/32 embeds into 512 dimensions" in err and not (tmp_path / "cache").exists()
