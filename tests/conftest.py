"""Shared fixtures: the sample set is generated once per test session (a few seconds)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def private_unicom_cache(tmp_path_factory):
    """Weights fingerprints and downloads go to a cache of the test session's own, not the
    user's ``~/.cache/unicom`` (subprocesses inherit it)."""
    old = os.environ.get("UNICOM_CACHE")
    os.environ["UNICOM_CACHE"] = str(tmp_path_factory.mktemp("unicom_cache"))
    yield
    if old is None:
        os.environ.pop("UNICOM_CACHE", None)
    else:
        os.environ["UNICOM_CACHE"] = old


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    """Path of a freshly generated (small) sample set, with its manifest dict."""
    from unicom.sample_data import generate_sample_set

    out = tmp_path_factory.mktemp("sample")
    manifest = generate_sample_set(str(out), seed=0, per_concept=12, heldout_per_concept=10, shard_size=150,
                                   image_size=64)
    return out, manifest


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A random ViT-Tiny/8@32 written with ``unicom.formats.export.save_export`` (what the trainer exports)."""
    import torch

    from unicom.data.transforms import CLIP_MEAN, CLIP_STD
    from unicom.formats.export import save_export
    from unicom.models.vit import build_vit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_vit("ViT-Tiny/8@32")
    out = tmp_path_factory.mktemp("tiny_export")
    save_export(model, out, image_size=32, mean=CLIP_MEAN, std=CLIP_STD, embed_dim=model.embed_dim)
    return out


def free_port() -> int:
    """A free TCP port on loopback for a test's own process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(script, args=(), world_size: int = 2, timeout: float = 300, env_extra=None, with_stderr: bool = False):
    """Run ``python SCRIPT ARGS`` as ``world_size`` ranks with torchrun's environment variables
    (gloo over loopback); assert every rank exits 0 and return their stdout, in rank order
    (``with_stderr``: stdout then stderr, where the commands' log records go)."""
    port = free_port()
    root = str(Path(__file__).resolve().parents[1])
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1", PYTHONPATH=root, **(env_extra or {}))
        procs.append(subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env, cwd=root,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"rank exited {p.returncode}:\n{out}\n{err[-3000:]}"
    return [out + err if with_stderr else out for out, err in outs]


def _mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (root only); False where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A folder on a 64 KiB tmpfs (a disk that fills up), unmounted afterwards; skipped where
    ``mount`` is not permitted (not root, or in a container without the capability)."""
    mnt = tmp_path / "small_disk"
    if not _mount_tmpfs(mnt, "64k"):
        pytest.skip("mounting a tmpfs is not permitted here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder nobody can write into: a read-only tmpfs (as root), else a chmod 0o555 folder;
    skipped where neither stops this process from writing."""
    mnt = tmp_path / "read_only"
    if _mount_tmpfs(mnt, "64k", read_only=True):
        yield mnt
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return
    mnt.mkdir(exist_ok=True)
    mnt.chmod(0o555)
    if os.access(mnt, os.W_OK):
        mnt.chmod(0o755)
        pytest.skip("cannot make a folder read-only for this user")
    yield mnt
    mnt.chmod(0o755)
