"""The ``unicom-train`` command: arguments, exit codes, and (slow) a real kill -9 and resume."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.unicom.train.support import TINY_OVERRIDES
from unicom.train.cli import main
from unicom.train.run_log import read_log


def test_bad_arguments_exit_2_with_a_message(toy_labels, tmp_path, capsys):
    shards, labels = toy_labels
    base = ["--data", str(shards), "--labels", str(labels), "--output", str(tmp_path / "run")]
    assert main(base + ["optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(base[:2] + ["--labels", str(tmp_path), "--output", str(tmp_path / "run")] + TINY_OVERRIDES) == 2
    assert "class_sizes.npy" in capsys.readouterr().err
    assert main(base + ["--config", str(tmp_path / "nope.yaml")]) == 2


def test_cli_trains_and_refuses_to_overwrite_a_run(toy_labels, tmp_path, capsys):
    shards, labels = toy_labels
    base = ["--data", str(shards), "--labels", str(labels), "--output", str(tmp_path / "run")]
    assert main(base + TINY_OVERRIDES + ["train.max_steps=2"]) == 0
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert main(base + ["--set", "train.max_steps=2"] + TINY_OVERRIDES) == 4
    assert "--resume" in capsys.readouterr().err
    # --resume on a finished run has nothing left to do
    assert main(base + TINY_OVERRIDES + ["train.max_steps=2", "--resume"]) == 0


@pytest.mark.slow
def test_kill_9_and_resume_matches_an_uninterrupted_run(toy_labels, tmp_path):
    shards, labels = toy_labels
    overrides = TINY_OVERRIDES + ["train.max_steps=40", "train.ckpt_every=5", "data.num_workers=2"]
    env = dict(os.environ, PYTHONPATH=os.getcwd())

    def cmd(out, *extra):
        return [sys.executable, "-m", "unicom.train.cli", "--data", str(shards), "--labels", str(labels),
                "--output", str(out), *overrides, *extra]

    subprocess.run(cmd(tmp_path / "ref"), env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd(tmp_path / "cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "cut" / "checkpoints" / "latest"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() != "step_5":
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up, no final checkpoint
    proc.wait()
    assert latest.is_file()
    subprocess.run(cmd(tmp_path / "cut", "--resume"), env=env, check=True, capture_output=True, timeout=600)
    ref, got = read_log(tmp_path / "ref"), read_log(tmp_path / "cut")
    assert [r["loss"] for r in got] == [r["loss"] for r in ref] and len(ref) == 40
