"""Map-style sources resume exactly mid-epoch; mixed sources get disjoint class ranges and their
sampling weights; evaluation while training keeps eval.csv, eval.png, export/ and export-last/."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.unicom.train import fake_train_trees as trees
from unicom.train.cli import main as train_main
from unicom.train.run_log import read_log

ROOT = Path(__file__).resolve().parents[3]
TINY = str(ROOT / "configs" / "finetune" / "tiny.yaml")


def run(*args) -> int:
    return train_main(["--config", TINY, *map(str, args)])


def test_killed_labelled_run_resumes_exactly_mid_epoch(tmp_path):
    folder = trees.image_folder(tmp_path / "folder", classes=("a", "b", "c", "d"), per_class=5)  # 20 images
    # 4 per batch, 2 loader workers, drop-path and timm's RandAugment + erasing: 9 steps = 1.8 epochs
    source = ["--dataset", "image_folder", "--data-root", folder]
    common = ["train.max_steps=9", "data.batch_size=4", "data.num_workers=2", "model.drop_path=0.1",
              "train.ckpt_every=3", "eval.every=0"]
    assert run(*source, "--output", tmp_path / "full", *common) == 0
    assert run(*source, "--output", tmp_path / "cut", *common, "train.stop_after_steps=7") == 0  # killed after step 7
    state = json.loads((tmp_path / "cut" / "checkpoints" / "step_6" / "state.json").read_text())
    assert state["data"] == {"kind": "labelled", "consumed": 24, "epoch": 1, "offset": 4, "num_samples": 20,
                             "world_size": 1}  # mid-epoch
    assert run(*source, "--output", tmp_path / "cut", "--resume", *common) == 0
    full, cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in cut] == list(range(1, 10))
    assert [r["loss"] for r in cut] == [r["loss"] for r in full]
    a = load_file(str(tmp_path / "full" / "export" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "export" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampler_covers_each_epoch_once_on_any_world_size():
    from unicom.train.labelled import GlobalOrder, ResumableBatchSampler

    order = GlobalOrder(10, seed=3)
    for world in (1, 2, 3):
        its = [iter(ResumableBatchSampler(order, 2, r, world, start=0)) for r in range(world)]
        seen = []
        while len(seen) < 30:
            for it in its:
                seen += [idx for _, idx, _ in next(it)]
        for e in range(3):  # positions 10e..10e+9 are a permutation of the 10 samples
            assert sorted(seen[10 * e:10 * e + 10]) == list(range(10))
    resumed = iter(ResumableBatchSampler(order, 2, 0, 1, start=6))
    assert [idx for _, idx, _ in next(resumed)] == [order.index(6), order.index(7)]


def test_mixed_sources_have_disjoint_class_ranges_and_their_weights(sample_set, tmp_path):
    from unicom.runtime.distributed import DistContext
    from unicom.train.augment import build_augment
    from unicom.train.config import load_config
    from unicom.train.sources import build_training_data

    root, _ = sample_set
    folder = trees.image_folder(tmp_path / "folder", classes=("a", "b", "c"), per_class=4)
    csv_file = trees.csv_list(tmp_path / "csv", classes=2)
    cfg = load_config(TINY, ["data.batch_size=4", "data.source_weight=0.6",
                             f"data.sources=[{{dataset: image_folder, data_root: '{folder}', weight: 0.3}}, "
                             f"{{dataset: csv, data_root: '{csv_file}', weight: 0.1}}]"])
    cfg.run.dataset, cfg.run.data, cfg.run.label_key = "shards", str(root / "shards"), "concept_id"
    data = build_training_data(cfg, DistContext(0, 1, 0, torch.device("cpu")))
    ranges = data.class_ranges()
    assert ranges == [(0, 36), (36, 39), (39, 41)] and data.num_classes == 41
    # RUN/inputs.json: every source's entries, prefixed, and the weights
    entries = data.fingerprint()
    assert set(entries) == {"mix", "source0.shards", "source0.labels", "source1.labelled", "source2.labelled"}
    assert entries["source0.labels"]["label_key"] == "concept_id" and entries["source2.labelled"]["dataset"] == "csv"
    assert entries["mix"]["weights"] == [0.6, 0.3, 0.1]
    # the source draw itself: 4000 micro-batches, weights 0.6 / 0.3 / 0.1
    draws = np.bincount([data.choose(j) for j in range(4000)], minlength=3) / 4000
    assert np.allclose(draws, [0.6, 0.3, 0.1], atol=0.03), draws
    # real batches: each one's labels lie in its source's range
    position = data.new_position()
    it = data.make_loader(position, build_augment(cfg.data, 32, (0.5,) * 3, (0.5,) * 3), pin_memory=False)
    counts = np.zeros(3)
    for _ in range(40):
        b = next(it)
        data.record(position, b)
        lo, hi = ranges[b.source]
        assert int(b.labels.min()) >= lo and int(b.labels.max()) < hi
        counts[b.source] += 1
    assert position.draws == 40 and counts.sum() == 40 and (counts > 0).all()
    assert abs(counts[0] / 40 - 0.6) < 0.2


@pytest.mark.slow  # two unicom-eval subprocesses: ~40 s on the shared 2-core CPU
def test_eval_every_epoch_writes_eval_csv_plot_best_and_last(tmp_path):
    csv_file = trees.csv_list(tmp_path / "csv", classes=3, per_class=4)  # 9 train rows, 3 test rows
    assert run("--dataset", "csv", "--data-root", csv_file, "--output", tmp_path / "run", "--eval-every", "1",
               "data.batch_size=3", "data.epochs=2") == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "eval.csv")))
    assert [int(r["step"]) for r in rows] == [3, 6] and "R@1" in rows[0]
    assert (tmp_path / "run" / "eval.png").stat().st_size > 1000
    best = json.loads((tmp_path / "run" / "eval" / "best.json").read_text())
    assert best["metric"] == "R@1" and best["value"] == max(float(r["R@1"]) for r in rows)
    for d in ("export", "export-last"):
        assert (tmp_path / "run" / d / "config.json").is_file()
    last = json.loads((tmp_path / "run" / "export-last" / "config.json").read_text())
    assert last["extra"]["step"] == 6
    # the evaluation is unicom-eval's own output folder
    step = json.loads((tmp_path / "run" / "eval" / "step_6" / "results.json").read_text())
    assert step["benchmark"] == "csv" and step["sizes"]["queries"] == 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["eval"]["evaluations"] == 2


def test_train_transforms_are_functions_of_the_generator_and_leave_global_rng_alone():
    import random

    from PIL import Image

    from unicom.train.augment import build_augment
    from unicom.train.config import load_config

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    for kind in ("timm", "origin_clip", "crop_flip"):
        cfg = load_config(TINY, [f"data.transform={kind}"])
        aug = build_augment(cfg.data, 32, (0.5,) * 3, (0.5,) * 3)
        random.seed(5)
        torch.manual_seed(5)
        before = (random.random(), torch.rand(1).item())
        random.seed(5)
        torch.manual_seed(5)
        outs = [aug(image, np.random.default_rng([1, k])) for k in (0, 0, 1, 2, 3)]
        assert (random.random(), torch.rand(1).item()) == before  # the caller's RNGs did not move
        assert outs[0].shape == (3, 32, 32) and torch.equal(outs[0], outs[1])
        differ = any(not torch.equal(outs[0], o) for o in outs[2:])
        assert differ == (kind != "origin_clip"), kind  # origin_clip is CLIP's fixed preprocessing


def test_timm_transform_is_timms_own_factory():
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing

    from unicom.train.augment import build_augment
    from unicom.train.config import load_config

    aug = build_augment(load_config(TINY, []).data, 32, (0.5,) * 3, (0.5,) * 3)
    parts = aug.transform.transforms
    assert any(isinstance(t, RandAugment) for t in parts)
    erasing = [t for t in parts if isinstance(t, RandomErasing)]
    assert erasing and erasing[0].probability == 0.25


def test_resume_refuses_a_changed_labelled_list_unless_allowed(tmp_path, capsys):
    csv_file = trees.csv_list(tmp_path / "csv", classes=3, per_class=4)  # 9 train rows
    common = ["--dataset", "csv", "--data-root", csv_file, "--output", tmp_path / "run"]
    overrides = ["data.batch_size=3", "eval.every=0", "train.ckpt_every=1", "train.max_steps=3"]
    assert run(*common, *overrides, "train.stop_after_steps=2") == 0
    entry = json.loads((tmp_path / "run" / "inputs.json").read_text())["entries"]["labelled"]
    assert entry["dataset"] == "csv" and entry["images"] == 9 and entry["num_classes"] == 3
    assert entry["csv_size"] == csv_file.stat().st_size and len(entry["list_digest"]) == 32
    lines = csv_file.read_text().splitlines()
    lines[1], lines[5] = lines[1].replace(",0,", ",1,"), lines[5].replace(",1,", ",0,")  # two labels swapped
    csv_file.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert run(*common, "--resume", *overrides) == 2
    err = capsys.readouterr().err
    assert "inputs of" in err and "labelled:" in err and "csv_digest" in err and "list_digest" in err
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step_2"  # nothing trained
    assert run(*common, "--resume", "--allow-changed-inputs", *overrides) == 0
    new = json.loads((tmp_path / "run" / "inputs.json").read_text())["entries"]["labelled"]
    assert new["list_digest"] != entry["list_digest"]  # the new inputs became the run's


def test_label_key_fingerprint_names_what_changed():
    from unicom.train.inputs import fingerprint_changes, json_label_entry
    from unicom.train.json_labels import JsonLabels

    a = {"labels": json_label_entry(JsonLabels("concept_id", 3, np.array([4, 5, 6])))}
    b = {"labels": json_label_entry(JsonLabels("concept_id", 3, np.array([5, 4, 6])))}  # one sample relabelled
    c = {"labels": json_label_entry(JsonLabels("class", 3, np.array([4, 5, 6])))}
    assert fingerprint_changes(a, a) == []
    assert fingerprint_changes(a, b) == ["labels: class_sizes changed"]
    assert fingerprint_changes(a, c) == ["labels: label_key changed"]
