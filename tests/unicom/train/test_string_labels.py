"""String class labels: ``--dataset csv`` with class names and ``--label-key`` on a string json
field train, resume and export with ``classes.json`` (sorted names, kept on resume); a source
mixing class ids and names is refused in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.retrieval_eval import fake_trees as fake
from tests.tar_files import write_tar
from unicom.datasets.base import LabelledList
from unicom.formats.export import read_classes
from unicom.train.classes import label_kind, map_names
from unicom.train.cli import main as train_main
from unicom.train.json_labels import JsonLabels
from unicom.train.labelled import check_labelled

ROOT = Path(__file__).resolve().parents[3]
TINY = str(ROOT / "configs" / "finetune" / "tiny.yaml")
FAST = ["data.batch_size=4", "eval.every=0", "data.transform=crop_flip"]


def run(*args) -> int:
    return train_main(["--config", TINY, *map(str, args)])


def named_csv(root: Path, names=("emu", "cat", "dog"), per_class: int = 4) -> Path:
    """``root/list.csv``: ``path,label`` rows labelled by class name, in an unsorted order."""
    rows = ["path,label"]
    for c, name in enumerate(names):
        for j in range(per_class):
            rel = f"img/{name}_{j}.jpg"
            fake.jpeg(root / rel, 500 + 10 * c + j)
            rows.append(f"{rel},{name}")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root / "list.csv"


def test_label_kinds():
    assert [label_kind(v) for v in (3, "3", " 12 ", "dog", "3.5", -1, "-2", "", None, True, 2.0)] == [
        "int", "int", "int", "name", "name", None, None, None, None, None, None]


def test_names_map_in_sorted_order_whatever_the_row_order():
    rows = LabelledList("csv", "train", Path("."), origins=[])
    for i, name in enumerate(["dog", "cat", "emu", "cat", "ant"]):
        rows.add(f"{i}.jpg", name, f"list.csv:{i + 1}")
    images = check_labelled(rows, integer_labels=True, check_files=False)
    assert images.class_names == ["ant", "cat", "dog", "emu"]
    assert images.labels.tolist() == [2, 1, 3, 1, 0] and images.num_classes == 4
    # a resumed run's saved names keep their ids although 'ant' is gone and the order is new
    rows2 = LabelledList("csv", "train", Path("."), origins=[])
    for i, name in enumerate(["emu", "dog", "cat"]):
        rows2.add(f"{i}.jpg", name, f"list.csv:{i + 1}")
    again = check_labelled(rows2, integer_labels=True, check_files=False, saved_names=images.class_names)
    assert again.labels.tolist() == [3, 2, 1] and again.num_classes == 4
    with pytest.raises(ValueError, match="'yak' is not in the run's classes.json"):
        map_names(["yak"], images.class_names, "list.csv")


def test_csv_mixing_ids_and_names_is_refused_in_one_line(tmp_path, capsys):
    csv = named_csv(tmp_path / "data")
    csv.write_text(csv.read_text() + "img/cat_0.jpg,7\n")
    assert run("--dataset", "csv", "--data-root", csv, "--output", tmp_path / "run", *FAST) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "mix class ids and class names" in err and "list.csv:14: '7'" in err and "list.csv:2: 'emu'" in err


def test_csv_class_names_train_resume_and_export_classes_json(tmp_path):
    csv = named_csv(tmp_path / "data")
    out = tmp_path / "run"
    common = ["--dataset", "csv", "--data-root", csv, "--output", out, *FAST, "train.max_steps=4",
              "train.ckpt_every=2"]
    assert run(*common, "train.stop_after_steps=2") == 0
    assert read_classes(out) == ["cat", "dog", "emu"]
    # the list loses every 'cat' row: sorted order alone would renumber dog → 0 and emu → 1 and shrink the
    # head; the resumed run keeps the saved ids (and its 3-class head), so the checkpoint still fits
    csv.write_text("\n".join(r for r in csv.read_text().splitlines() if ",cat" not in r) + "\n")
    assert run(*common, "--resume", "--allow-changed-inputs") == 0
    assert read_classes(out) == ["cat", "dog", "emu"]
    assert read_classes(out / "export") == ["cat", "dog", "emu"]
    config = json.loads((out / "export" / "config.json").read_text())
    assert config["decode"] == {"version": 1, "background": "#ffffff"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["num_classes"] == 3


def test_resume_refuses_a_class_name_the_run_never_had(tmp_path, capsys):
    csv = named_csv(tmp_path / "data", per_class=3)
    out = tmp_path / "run"
    common = ["--dataset", "csv", "--data-root", csv, "--output", out, *FAST, "train.max_steps=3",
              "train.ckpt_every=1"]
    assert run(*common, "train.stop_after_steps=1") == 0
    capsys.readouterr()
    csv.write_text(csv.read_text().replace(",emu", ",yak"))
    assert run(*common, "--resume", "--allow-changed-inputs") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'yak' is not in the run's classes.json" in err


def _json_shard(path: Path, labels) -> Path:
    members = []
    for i, label in enumerate(labels):
        jpg = path.parent / f"{i}.jpg"
        fake.jpeg(jpg, 900 + i)
        members += [(f"{i:04d}.jpg", jpg.read_bytes()), (f"{i:04d}.json", json.dumps({"label": label}).encode())]
    write_tar(path, members)
    return path


def test_json_field_mixing_ids_and_names_is_refused(tmp_path, capsys):
    shard = _json_shard(tmp_path / "00000.tar", ["dog", "cat", 3])
    with pytest.raises(ValueError, match="mix class ids and class names"):
        JsonLabels.scan([str(shard)], "label")
    assert run("--data", shard, "--label-key", "label", "--output", tmp_path / "run", *FAST) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample 0002: 3" in err and "sample 0000: 'dog'" in err


def test_json_names_are_counted_by_sorted_name(tmp_path):
    shard = _json_shard(tmp_path / "00000.tar", ["dog", "cat", "dog", "ant"])
    labels = JsonLabels.scan([str(shard)], "label")
    assert labels.names == ["ant", "cat", "dog"] and labels.class_sizes.tolist() == [1, 1, 2]
    raw = {"json": b'{"label": "dog"}'}
    assert labels.label_for(raw, "00000", "k") == 2
    with pytest.raises(ValueError, match="is a class id, but this run's labels are class names"):
        labels.label_for({"json": b'{"label": 1}'}, "00000", "k")


def test_label_key_on_a_string_field_trains_resumes_and_exports_classes(sample_set, tmp_path):
    root, manifest = sample_set
    out = tmp_path / "run"
    common = ["--data", root / "shards", "--label-key", "concept", "--output", out, *FAST, "train.max_steps=4",
              "train.ckpt_every=2"]
    assert run(*common, "train.stop_after_steps=2") == 0
    names = read_classes(out)
    concepts = sorted({c for c in _concepts(root)})
    assert names == concepts and len(names) == 36
    assert run(*common, "--resume") == 0
    assert read_classes(out / "export") == concepts
    inputs = json.loads((out / "inputs.json").read_text())["entries"]["labels"]
    assert inputs["label_key"] == "concept" and len(inputs["class_names"]) == 32


def _concepts(root: Path):
    from unicom.data.wds_reader import Skipped, iter_raw

    for raw in iter_raw(sorted(str(p) for p in (root / "shards").glob("*.tar"))):
        if not isinstance(raw, Skipped) and "json" in raw:
            yield json.loads(raw["json"])["concept"]


def test_integer_labels_write_no_classes_json(tmp_path):
    from tests.unicom.train import fake_train_trees as trees

    csv = trees.csv_list(tmp_path / "csv", classes=2)
    out = tmp_path / "run"
    assert run("--dataset", "csv", "--data-root", csv, "--output", out, *FAST, "train.max_steps=1") == 0
    assert read_classes(out) is None and read_classes(out / "export") is None
    assert np.isfinite(json.loads((out / "summary.json").read_text())["last_loss"])
