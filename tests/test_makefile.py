"""The Makefile's launcher choice and variable names, read from ``make -n`` (a dry run: the
commands are printed, nothing runs)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _cluster_command(*assignments: str) -> str:
    """The ``make cluster`` recipe line(s) that start clustering, as one string."""
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "cluster", "DATA=/nowhere/shards", "OUT=/tmp/unicom-out",
                          *assignments], capture_output=True, text=True, check=True).stdout
    text = out.replace("\\\n", " ")
    lines = [line for line in text.splitlines() if "clustering.cli" in line]
    assert len(lines) == 1, out
    return " ".join(lines[0].split())


def test_one_process_runs_plainly():
    cmd = _cluster_command()
    assert "torchrun" not in cmd and cmd.startswith(".venv/bin/python -m clustering.cli")


def test_several_processes_go_through_torchrun_standalone():
    assert "torchrun --standalone --nproc_per_node 4 -m clustering.cli" in _cluster_command("NPROC=4")


def test_torchrun_args_alone_choose_torchrun_even_with_one_process_per_node():
    cmd = _cluster_command("NPROC=1", "TORCHRUN_ARGS=--nnodes 4 --node_rank 2 --master_addr h --master_port 29500")
    assert "torchrun --nnodes 4 --node_rank 2 --master_addr h --master_port 29500 --nproc_per_node 1 -m" in cmd
    assert "--standalone" not in cmd


def test_new_variable_and_flag_names_with_the_old_ones_still_honoured():
    cmd = _cluster_command("CLIP_MODEL=ViT-B-32", "CLIP_PRETRAINED=openai", "NUM_CLUSTERS=7")
    assert "--output /tmp/unicom-out --num-clusters 7 --clip-model ViT-B-32 --clip-pretrained openai" in cmd
    old = _cluster_command("MODEL=ViT-B-16", "PRETRAINED=laion2b_s34b_b88k", "K=9")
    assert "--num-clusters 9 --clip-model ViT-B-16 --clip-pretrained laion2b_s34b_b88k" in old
    assert "--out " not in cmd and "--k " not in cmd and "--model " not in cmd
