"""Fine-tuning on labelled data (``unicom-train --dataset``): every official layout's train
split, image folders, CSV lists, shards with --label-key, init_from, and the bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.unicom.train import fake_train_trees as trees
from unicom.train.cli import main as train_main
from unicom.train.run_log import read_log

ROOT = Path(__file__).resolve().parents[3]
TINY = str(ROOT / "configs" / "finetune" / "tiny.yaml")
FAST = ["train.max_steps=2", "data.batch_size=4", "eval.every=0"]


def run(*args: str) -> int:
    return train_main(["--config", TINY, *map(str, args)])


@pytest.mark.parametrize("name", sorted(trees.LAYOUTS))
def test_each_official_layout_fine_tunes_exports_loads_and_evaluates(name, tmp_path):
    import unicom
    from retrieval_eval.pipeline import evaluate

    root = trees.LAYOUTS[name](tmp_path / "data")
    assert run("--dataset", name, "--data-root", root, "--output", tmp_path / "run", *FAST) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["finished"] and summary["step"] == 2 and summary["num_classes"] in (3, 4)
    assert len(read_log(tmp_path / "run")) == 2
    model, transform = unicom.load(str(tmp_path / "run" / "export"), device="cpu")
    assert model.embed_dim == 32
    results = evaluate((model, transform), name, root, batch_size=4, workers=0, device="cpu", progress=False)
    headline = "mAP@100" if name == "gldv2" else "R@1"
    assert 0.0 <= results["metrics"][headline] <= 1.0


def test_image_folder_and_csv_sources(tmp_path):
    folder = trees.image_folder(tmp_path / "folder")
    assert run("--dataset", "image_folder", "--data-root", folder, "--output", tmp_path / "a", *FAST) == 0
    csv_file = trees.csv_list(tmp_path / "csv")
    assert run("--dataset", "csv", "--data", csv_file, "--output", tmp_path / "b", *FAST) == 0  # --data works too
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["num_classes"] == 3 and b["num_classes"] == 3


def test_shards_with_label_key_on_the_sample_set(sample_set, tmp_path):
    root, _ = sample_set
    rc = train_main(["--config", str(ROOT / "configs" / "demo.yaml"), "--dataset", "shards", "--data",
                     str(root / "shards"), "--label-key", "concept_id", "--output", str(tmp_path / "run"),
                     "train.max_steps=2", "train.progress=false", "data.batch_size=16", "data.num_workers=0"])
    assert rc == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    manifest = json.loads((root / "manifest.json").read_text())
    assert summary["finished"] and summary["num_classes"] == len(manifest["train_concepts"])


def test_init_from_an_export_and_a_mismatch_names_both_sides(tmp_path, capsys):
    from unicom.formats.export import load_export_state
    from unicom.train.config import load_config
    from unicom.train.model import build_backbone

    csv_file = trees.csv_list(tmp_path / "csv")
    assert run("--dataset", "csv", "--data-root", csv_file, "--output", tmp_path / "a", *FAST) == 0
    start = tmp_path / "a" / "export"
    cfg = load_config(TINY, [f"model.init_from={start}"])
    torch.manual_seed(123)
    model = build_backbone(cfg)
    saved = load_export_state(start)
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)
    # --model sets model.init_from; training starts from those weights
    assert run("--dataset", "csv", "--data-root", csv_file, "--model", start, "--output", tmp_path / "b", *FAST) == 0
    # an official-style .pt (a plain fp16 state dict): the architecture is inferred from the shapes
    pt = tmp_path / "tiny.pt"
    torch.save({k: v.half() for k, v in saved.items()}, pt)
    model = build_backbone(load_config(TINY, [f"model.init_from={pt}"]))
    assert all(torch.equal(model.state_dict()[k], saved[k].half().float()) for k in saved)
    # model.name null: the architecture comes from --model (the custom preset's way)
    cfg = load_config(str(ROOT / "configs" / "finetune" / "custom.yaml"),
                      [f"model.init_from={start}", "head.feature_sample_dim=16"])
    model = build_backbone(cfg)
    assert model.config.width == 64 and all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)
    # a different architecture: the error names both sides
    rc = run("--dataset", "csv", "--data-root", csv_file, "--model", start, "--output", tmp_path / "c",
             "model.name=ViT-Tiny/16@64", *FAST)
    err = capsys.readouterr().err
    assert rc == 2 and "ViT 32px, patch 8, width 64" in err and "ViT 64px, patch 16, width 96" in err


# ---- bad input -------------------------------------------------------------------------------
def _csv(tmp_path, text: str) -> Path:
    trees.csv_list(tmp_path)  # images img/<c>_<j>.jpg
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("img/0_0.jpg,0\nimg/nope.jpg,1\n", "bad.csv:2: image file"),
    ("img/0_0.jpg,0\nimg/0_1.jpg,cat\n", "bad.csv:2: 'cat'); use one kind"),
    ("img/0_0.jpg,0\nimg/0_1.jpg, \n", "bad.csv:2: label '' is neither a class id"),
    ("path,label\nimg/0_0.jpg,0\nimg/0_1.jpg\n", "bad.csv:3: expected path,label[,split]"),
    ("img/0_0.jpg,0\nimg/0_1.jpg,-1\n", "bad.csv:2: label -1 is negative"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, capsys, text, expected):
    path = _csv(tmp_path, text)
    assert run("--dataset", "csv", "--data-root", path, "--output", tmp_path / "run", *FAST) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "checkpoints").exists()  # found before training started


def test_label_outside_the_head_and_empty_class_folder(tmp_path, capsys):
    path = _csv(tmp_path, "img/0_0.jpg,0\nimg/1_0.jpg,5\n")
    assert run("--dataset", "csv", "--data-root", path, "--output", tmp_path / "r1", "data.num_classes=3", *FAST) == 2
    assert "bad.csv:2: label 5 is outside the head (data.num_classes=3" in capsys.readouterr().err
    folder = trees.image_folder(tmp_path / "folder")
    (folder / "empty_class").mkdir()
    assert run("--dataset", "image_folder", "--data-root", folder, "--output", tmp_path / "r2", *FAST) == 2
    assert "empty_class: class folder holds no images" in capsys.readouterr().err


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    folder = trees.image_folder(tmp_path / "folder")
    (folder / "cat" / "cat_0.jpg").write_bytes(b"not a jpeg")
    assert run("--dataset", "image_folder", "--data-root", folder, "--output", tmp_path / "run",
               "train.max_steps=6", "data.batch_size=4") == 0  # 24 samples = 2 epochs: the bad one is met twice
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped"].get("bad_image") == 2 and summary["finished"]


def test_unknown_dataset_and_missing_flags_are_one_line_errors(tmp_path, capsys):
    assert run("--dataset", "imagenet", "--data-root", tmp_path, "--output", tmp_path / "r") == 2
    assert "--dataset 'imagenet' is unknown" in capsys.readouterr().err
    assert run("--dataset", "sop", "--output", tmp_path / "r") == 2
    assert "--dataset sop needs --data-root" in capsys.readouterr().err
    assert run("--dataset", "sop", "--data-root", tmp_path, "--output", tmp_path / "r") == 2
    assert "Ebay_train.txt" in capsys.readouterr().err


def test_the_eval_hook_uses_unicom_evals_current_flags_and_output_folder(tmp_path):
    """The hook runs ``python -m retrieval_eval.cli`` as a subprocess: its command line must parse
    with that CLI's own parser (no deprecated aliases) and read back the file it writes."""
    from types import SimpleNamespace

    import torch

    from retrieval_eval.cli import build_parser
    from retrieval_eval.outputs import RESULTS_FILE
    from unicom.train.config import load_config
    from unicom.train.eval_hook import EVAL_RESULTS, EvalHook

    cfg = load_config(None, ["eval.every=1", "eval.benchmark=sop", "eval.batch_size=8"])
    cfg.run.data_root = str(tmp_path / "sop")
    ctx = SimpleNamespace(device=torch.device("cpu"), is_main=True)
    hook = EvalHook(cfg, ctx, tmp_path / "run", 100, 32, (0.5,) * 3, (0.5,) * 3, 16)
    cmd = hook.command(7)
    assert cmd[1:3] == ["-m", "retrieval_eval.cli"]
    args = build_parser().parse_args(cmd[3:])
    assert args.output == str(tmp_path / "run" / "eval" / "step_7") and not args.output.endswith(".json")
    # --benchmark and --data-root take one value or several (one per benchmark)
    assert args.benchmark == ["sop"] and args.data_root == [str(tmp_path / "sop")] and args.batch_size == 8
    assert not {"--k", "--open-clip", "--pretrained"} & set(cmd)
    assert EVAL_RESULTS == RESULTS_FILE
