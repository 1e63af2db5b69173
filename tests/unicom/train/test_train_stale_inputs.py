"""The trainer under faults (docs/training.md, "Failure modes (training)"): read-only and full
outputs, NaN/Inf starting weights, the starting encoder's fingerprint in inputs.json, and the
epoch of a run on some of the labelled shards."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from tests.unicom.train.support import TINY_OVERRIDES, tiny_config
from unicom.formats.atomic_io import read_npy
from unicom.formats.fingerprint import file_sha256
from unicom.runtime.distributed import init_distributed
from unicom.train.cli import main
from unicom.train.model import build_backbone
from unicom.train.sources import ShardData


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("unicom-train: "), lines
    return lines[-1]


def _args(shards, labels, out, *overrides, flags=()):
    return ["--data", str(shards), "--labels", str(labels), "--output", str(out), *flags, *TINY_OVERRIDES,
            *overrides]


def _weights(path, nan: bool = False, seed: int = 0):
    """A weights file of the tiny ViT the test config builds; ``nan`` puts NaN/Inf in two tensors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = {k: v.detach().clone().contiguous() for k, v in build_backbone(tiny_config()).state_dict().items()}
    if nan:
        first, second = [k for k, v in state.items() if v.is_floating_point()][:2]
        state[first].view(-1)[0] = float("nan")
        state[second].view(-1)[-1] = float("inf")
    save_file(state, str(path))
    return path


def test_a_read_only_output_is_one_line_before_any_set_up(toy_labels, read_only_dir, capsys):
    shards, labels = toy_labels
    assert main(_args(shards, labels, read_only_dir / "run")) == 2
    err = _error_line(capsys)
    assert err.startswith(f"unicom-train: cannot write {read_only_dir / 'run'}")
    assert "read-only" in err or "permission denied" in err


def test_a_disk_that_fills_up_mid_run_is_one_line(toy_labels, small_tmpfs, capsys):
    shards, labels = toy_labels
    assert main(_args(shards, labels, small_tmpfs / "run", "train.max_steps=2")) == 2
    err = _error_line(capsys)
    assert "no space left on the device" in err and str(small_tmpfs / "run") in err
    assert not list(small_tmpfs.rglob("*.tmp"))  # nothing half-written is left


def test_nan_starting_weights_are_refused_before_the_first_step(toy_labels, tmp_path, capsys):
    shards, labels = toy_labels
    bad = _weights(tmp_path / "diverged.safetensors", nan=True)
    assert main(_args(shards, labels, tmp_path / "run", "train.max_steps=2", flags=("--model", str(bad)))) == 2
    err = _error_line(capsys)
    assert "NaN/Inf weights in 2 tensor(s)" in err and str(bad) in err and "model.init_from" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_inputs_json_records_the_starting_weights_and_a_resume_keeps_them(toy_labels, tmp_path, caplog):
    shards, labels = toy_labels
    start = _weights(tmp_path / "start.safetensors", seed=0)
    sha = file_sha256(start)
    run = tmp_path / "run"
    common = ("train.max_steps=2", "train.ckpt_every=1")
    assert main(_args(shards, labels, run, *common, "train.stop_after_steps=1", flags=("--model", str(start)))) == 0
    entry = json.loads((run / "inputs.json").read_text())["entries"]["init_from"]
    assert entry == {"source": str(start), "weights": str(start.resolve()), "weights_sha256": sha}
    _weights(start, seed=1)  # the starting file is rewritten: the run continues from its own checkpoint
    assert file_sha256(start) != sha
    assert main(_args(shards, labels, run, *common, flags=("--model", str(start), "--resume"))) == 0
    assert "started from other weights than model.init_from holds now" in caplog.text
    assert json.loads((run / "inputs.json").read_text())["entries"]["init_from"]["weights_sha256"] == sha


def test_an_epoch_counts_the_labels_of_the_shards_used(toy_labels):
    shards, labels = toy_labels
    names = sorted(p.stem for p in shards.glob("*.tar"))
    used = os.path.join(str(shards), "{" + f"{names[0]}..{names[1]}" + "}.tar")
    data = ShardData(tiny_config(), init_distributed("cpu"), used, str(labels), None)
    expected = sum(int((read_npy(labels / f"{n}.npy") >= 0).sum()) for n in names[:2])
    assert data.samples_per_epoch == expected < int(read_npy(labels / "class_sizes.npy").sum())
    note = data.describe()
    assert f"an epoch is the {expected} labelled samples of the 2 shard(s) used ({names[0]}, {names[1]})" in note
    everything = ShardData(tiny_config(), init_distributed("cpu"), str(shards), str(labels), None)
    assert everything.samples_per_epoch == int(np.sum(read_npy(labels / "class_sizes.npy")))
    assert "an epoch is" not in everything.describe()


def test_a_folder_in_use_is_refused_before_torch_is_imported(toy_labels, tmp_path):
    """The refusal used to come after torch, the data and the model were set up (seconds under
    load); it now comes from the command-line layer, before any heavy import."""
    import subprocess
    import sys

    from unicom.cli.run_lock import lock_output_dir

    shards, labels = toy_labels
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    with lock_output_dir(tmp_path / "run", "unicom-train"):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "unicom.train.cli",
                               *_args(shards, labels, tmp_path / "run")], env=env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert f"pid {os.getpid()}" in proc.stderr.strip().splitlines()[-1]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "unicom.cli.run_lock" in imported and "torch" not in imported
