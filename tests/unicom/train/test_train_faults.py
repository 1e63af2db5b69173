"""Faults a run folder must survive (docs/training.md, "Failure modes (training)"): a second
trainer on the same folder, changed inputs on --resume, divergence to non-finite weights, bad
label files, a truncated checkpoint, and pickles in a checkpoint."""
import logging
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.unicom.train.support import TINY_OVERRIDES, tiny_config
from unicom.formats.atomic_io import read_npy, write_npy
from unicom.train.cli import main
from unicom.train.inputs import fingerprint_changes
from unicom.train.loop import NonFiniteLossError, train
from unicom.train.run_log import read_log


def _own_labels(toy, tmp_path):
    """A private copy of the toy cluster output (features/ + labels/), free to damage."""
    shards, labels = toy
    copy = tmp_path / "cluster"
    shutil.copytree(labels.parent, copy)
    return shards, copy / "labels"


def _error_line(capsys) -> str:
    """The CLI's one-line error (the last line of stderr; log records may precede it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("unicom-train: "), lines
    return lines[-1]


def _args(shards, labels, out, *extra):
    return ["--data", str(shards), "--labels", str(labels), "--output", str(out), *TINY_OVERRIDES, *extra]


def test_a_second_trainer_on_a_run_folder_is_refused_and_the_first_finishes_cleanly(toy_labels, tmp_path, capsys):
    shards, labels = toy_labels
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "unicom.train.cli", *_args(shards, labels, run, "train.max_steps=40")]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not read_log(run) and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first trainer ended before the second one could start"
        t0 = time.time()
        code = main(_args(shards, labels, run, "train.max_steps=40", "--resume"))
        took = time.time() - t0
        err = _error_line(capsys)
    finally:
        _, first_err = first.communicate(timeout=300)
    assert code == 5 and took < 5.0, (code, took)
    assert f"pid {first.pid}" in err and "unicom-train" in err, err
    assert first.returncode == 0, first_err[-2000:]
    assert [r["step"] for r in read_log(run)] == list(range(1, 41))  # each step once: nothing interleaved


def test_resume_after_reclustering_is_refused_naming_the_labels(toy_labels, tmp_path, capsys):
    shards, labels = _own_labels(toy_labels, tmp_path)
    run = tmp_path / "run"
    steps = ("train.max_steps=6", "train.ckpt_every=2")
    assert main(_args(shards, labels, run, *steps, "train.stop_after_steps=3")) == 0
    # "re-cluster" with another seed: the same K, every class id permuted
    sizes = read_npy(labels / "class_sizes.npy")
    perm = np.random.default_rng(1).permutation(len(sizes))
    for f in labels.glob("0*.npy"):
        write_npy(f, perm[read_npy(f)].astype(np.int32))
    sizes_new = np.zeros_like(sizes)
    sizes_new[perm] = sizes
    write_npy(labels / "class_sizes.npy", sizes_new)
    capsys.readouterr()
    assert main(_args(shards, labels, run, *steps, "--resume")) == 2
    err = _error_line(capsys)
    assert "labels: 00000.npy" in err and "changed" in err, err
    assert "--allow-changed-inputs" in err and "--output" in err
    assert max(r["step"] for r in read_log(run)) == 3  # nothing ran
    assert main(_args(shards, labels, run, *steps, "--resume", "--allow-changed-inputs")) == 0
    assert [r["step"] for r in read_log(run)] == list(range(1, 7))
    # accepted once, the new inputs are the run's: a plain --resume is fine again
    assert main(_args(shards, labels, run, *steps, "--resume")) == 0


def test_fingerprint_changes_name_each_entry_and_item():
    old = {"shards": {"00000": 100, "00001": 200}, "labels": {"num_classes": 36, "00000.npy": "a"},
           "dataset:cub": {"images.txt": "x"}}
    new = {"shards": {"00000": 100, "00001": 250, "00002": 1}, "labels": {"num_classes": 40, "00000.npy": "a"}}
    changes = fingerprint_changes(old, new)
    assert changes == ["dataset:cub: removed", "labels: num_classes changed", "shards: 00001 changed, 1 added (00002)"]
    assert fingerprint_changes(new, new) == []


def test_divergence_names_a_finite_checkpoint_and_resuming_with_a_lower_lr_works(toy_labels, tmp_path):
    shards, labels = toy_labels
    run = tmp_path / "run"
    common = ("train.max_steps=10", "train.ckpt_every=1", "train.keep_checkpoints=1", "train.max_nonfinite=2")
    train(tiny_config(*common, "train.stop_after_steps=4"), str(shards), str(labels), str(run))
    with pytest.raises(NonFiniteLossError) as info:  # an absurd LR makes the weights blow up
        train(tiny_config(*common, "optim.lr=1e30"), str(shards), str(labels), str(run), resume=True)
    named = re.search(r"The last finite checkpoint is (\S+) ", str(info.value))
    assert named, str(info.value)
    step_dir = tmp_path / "run" / "checkpoints" / os.path.basename(named.group(1))
    assert (run / "checkpoints" / "latest").read_text().strip() == step_dir.name
    weights = load_file(str(step_dir / "backbone.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    for f in (step_dir / "centres").iterdir():
        assert all(torch.isfinite(v).all() for v in load_file(str(f)).values() if v.is_floating_point())
    # resuming from it with another LR trains to the end with finite losses
    summary = train(tiny_config(*common, "optim.lr=1e-3"), str(shards), str(labels), str(run), resume=True)
    assert summary["finished"] and summary["step"] == 10
    rows = read_log(run)
    assert [r["step"] for r in rows] == list(range(1, 11)) and all(np.isfinite(r["loss"]) for r in rows)
    # the new LR took effect: step 10's LR is 1e-3 × the schedule's factor, not the old 2e-3 × it
    from unicom.train.schedule import LRSchedule

    factor = LRSchedule.from_state_dict(
        __import__("json").loads((run / "checkpoints" / "step_10" / "state.json").read_text())["schedule"]).factor(
        10 * 16)
    assert rows[-1]["lr"] == pytest.approx(1e-3 * factor, rel=1e-4)
    assert (run / "export" / "model.safetensors").is_file()


def _damage_labels(labels, how):
    f = labels / "00001.npy"
    lab = read_npy(f)
    if how == "length":
        write_npy(f, lab[:-1])
    elif how == "range":
        lab[3] = 10_000
        write_npy(f, lab)
    elif how == "float":
        write_npy(f, lab.astype(np.float64))
    elif how == "nan":
        bad = lab.astype(np.float32)
        bad[0] = np.nan
        write_npy(f, bad)
    return f


@pytest.mark.parametrize("how,words", [("length", "keys"), ("range", "10000"), ("float", "float64"),
                                       ("nan", "NaN")])
def test_bad_label_files_are_refused_before_the_first_step(toy_labels, tmp_path, how, words):
    shards, labels = _own_labels(toy_labels, tmp_path)
    bad = _damage_labels(labels, how)
    run = tmp_path / "run"
    with pytest.raises(ValueError) as info:  # loader workers would otherwise find it mid-run
        train(tiny_config("train.max_steps=3", "data.num_workers=2"), str(shards), str(labels), str(run))
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and str(bad) in msg and words in msg, msg
    assert not read_log(run)


def test_resume_on_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(toy_labels, tmp_path, caplog):
    shards, labels = toy_labels
    run = tmp_path / "run"
    common = ("train.max_steps=6", "train.ckpt_every=2")
    train(tiny_config(*common, "train.stop_after_steps=5"), str(shards), str(labels), str(run))
    bad = run / "checkpoints" / "step_4" / "optimizer.pt"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated copy
    with caplog.at_level(logging.WARNING, logger="unicom"):
        summary = train(tiny_config(*common), str(shards), str(labels), str(run), resume=True)
    assert any(str(bad) in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert summary["finished"] and summary["session_steps"] == 4  # from step 2
    assert [r["step"] for r in read_log(run)] == list(range(1, 7))


def test_a_pickled_object_in_a_checkpoint_is_refused_with_a_conversion_hint(toy_labels, tmp_path, capsys):
    shards, labels = toy_labels
    run = tmp_path / "run"
    steps = ("train.max_steps=4", "train.ckpt_every=2")
    assert main(_args(shards, labels, run, *steps, "train.stop_after_steps=3")) == 0
    opt = run / "checkpoints" / "step_2" / "optimizer.pt"
    state = torch.load(opt, weights_only=True)
    state["extra"] = logging.Formatter()  # an arbitrary Python object
    torch.save(state, opt)
    capsys.readouterr()
    assert main(_args(shards, labels, run, *steps, "--resume")) == 2
    err = _error_line(capsys)
    assert str(opt) in err and "Formatter" in err and "state_dict" in err, err
    assert "weights_only=False" not in err
