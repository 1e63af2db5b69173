"""Load test of unicom-serve on loopback: N concurrent clients for a bounded time, bad requests
mixed in, two rounds; prints latency percentiles, queries per second, responses by kind and the
server's RSS, writes serve_load.json and serve_load.png, and exits 1 unless every check holds:

* no 5xx response at all;
* every bad request answered 4xx, every good one 200;
* /healthz still OK at the end;
* no memory growth: the server's RSS after round 2 within --rss-slack-mb of after round 1.

  python benchmarks/serve_load.py                                # a sample index made here (seconds)
  python benchmarks/serve_load.py --index runs/demo/index --clients 16 --seconds 30

Without --index it makes the sample set, embeds its shards with a random ViT of the demo's
size (64 px, width 192, 4 blocks, 128-d) and serves that. The server is `unicom-serve` in a
subprocess bound to 127.0.0.1; the clients are asyncio + httpx in this process.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 2.0   # the server's --max-upload-mb here, so that an oversized upload costs 2 MB, not 10

# (kind, expected status) of the bad requests, sent in turn
BAD_KINDS = [("not_an_image", 400), ("truncated", 400), ("bomb", 413), ("too_large", 413), ("content_type", 415),
             ("malformed_json", 400), ("nan_embedding", 400), ("wrong_length", 400), ("bad_k", 400),
             ("unknown_id", 404), ("text_query", 400)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default=None, help="an index to serve (default: a sample index made in --work)")
    p.add_argument("--work", default="runs/bench/serve_load", help="folder for the sample index and the results")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each round")
    p.add_argument("--max-requests", type=int, default=20000, help="requests per round at most")
    p.add_argument("--rounds", type=int, default=2, help="rounds (memory growth is judged between the last two)")
    p.add_argument("--bad-share", type=float, default=0.15, help="share of bad requests")
    p.add_argument("--k", type=int, default=10, help="results per query")
    p.add_argument("--rss-slack-mb", type=float, default=24.0, help="RSS growth allowed between the last rounds")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the server (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- the index and the images

def make_sample_index(work: Path) -> Path:
    """The sample shards embedded by a random ViT of the demo's size into ``work/index``."""
    import torch

    from unicom.data.transforms import CLIP_MEAN, CLIP_STD
    from unicom.embed.cli import main as embed_main
    from unicom.formats.export import save_export
    from unicom.models.vit import ViTConfig, build_vit
    from unicom.sample_data import generate_sample_set

    out = work / "index"
    if (out / "index" / "index.json").is_file():
        return out
    sample = work / "sample"
    if not (sample / "manifest.json").is_file():
        generate_sample_set(str(sample), seed=0)
    torch.manual_seed(0)
    save_export(build_vit(ViTConfig(64, 16, 192, 4, 3, 128)).eval(), work / "export", 64, CLIP_MEAN, CLIP_STD, 128)
    rc = embed_main(["--model", str(work / "export"), "--data", str(sample / "shards"), "--output", str(out),
                     "--index-type", "flat", "--workers", "0", "--no-progress", "--log-level", "WARNING"])
    if rc != 0:
        raise SystemExit(f"unicom-embed failed ({rc})")
    return out


def query_images(index: Path, n: int = 64) -> List[bytes]:
    """Up to ``n`` image files (bytes) of the indexed collection, read from its shards or folder."""
    meta = json.loads((index / "index" / "index.json").read_text()) if (index / "index").is_dir() else \
        json.loads((index / "index.json").read_text())
    out: List[bytes] = []
    for s in meta["shards"]:
        if s["kind"] == "tar":
            try:
                with tarfile.open(s["source"]) as tf:
                    for m in tf:
                        if m.isfile() and m.name.rsplit(".", 1)[-1].lower() in ("jpg", "jpeg", "png", "webp"):
                            out.append(tf.extractfile(m).read())
                            if len(out) >= n:
                                return out
            except (tarfile.TarError, OSError, EOFError):
                continue
        elif s["kind"] == "files":
            for p in sorted(Path(s["source"]).rglob("*.jpg"))[:n]:
                out.append(p.read_bytes())
        if len(out) >= n:
            break
    if not out:
        raise SystemExit(f"no readable images in the shards of {index}")
    return out


def bomb_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (Linux /proc, else psutil)."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def start_server(index: Path, port: int, threads: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "unicom.serve.cli", "--index", str(index), "--port", str(port), "--device", "cpu",
           "--max-upload-mb", str(MAX_UPLOAD_MB), "--no-progress", "--log-level", "WARNING"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 120) -> dict:
    import httpx

    deadline = time.time() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=5) as c:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                r = await c.get("/healthz")
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the server did not become healthy in time")


# ---------------------------------------------------------------------------- the clients

class Load:
    """The request mix: good requests (uploads, item neighbours, embeddings) and bad ones in turn."""

    def __init__(self, images: List[bytes], n_items: int, dim: int, k: int, bad_share: float, seed: int):
        self.images, self.n, self.dim, self.k, self.bad_share = images, n_items, dim, k, bad_share
        self.rng = random.Random(seed)
        self.bad_turn = 0
        self.bomb = bomb_png()
        self.big = os.urandom(int(MAX_UPLOAD_MB * 2**20) + 4096)

    def next(self) -> Tuple[str, str, dict, Optional[int]]:
        """(label, method, request kwargs, expected status or None for 200)."""
        if self.rng.random() < self.bad_share:
            kind, status = BAD_KINDS[self.bad_turn % len(BAD_KINDS)]
            self.bad_turn += 1
            return f"bad:{kind}", "POST" if kind not in ("unknown_id", "bad_k") else "GET", self.bad(kind), status
        r = self.rng.random()
        if r < 0.7:
            img = self.rng.choice(self.images)
            return "upload", "POST", {"url": f"/search?k={self.k}", "files": {"image": ("q.jpg", img, "image/jpeg")}}, \
                None
        if r < 0.85:
            return "item", "GET", {"url": f"/items/{self.rng.randrange(self.n)}/neighbours?k={self.k}"}, None
        v = np.random.default_rng(self.rng.randrange(2**31)).standard_normal(self.dim).tolist()
        return "embedding", "POST", {"url": f"/search?k={self.k}", "json": {"embedding": v}}, None

    def bad(self, kind: str) -> dict:
        img = self.rng.choice(self.images)
        up = lambda data, name="q.jpg": {"url": "/search", "files": {"image": (name, data, "image/jpeg")}}
        return {
            "not_an_image": lambda: up(b"this is not an image " * 40),
            "truncated": lambda: up(img[: len(img) // 3]),
            "bomb": lambda: up(self.bomb, "bomb.png"),
            "too_large": lambda: up(self.big, "big.jpg"),
            "content_type": lambda: {"url": "/search", "content": b"hello", "headers": {"content-type": "text/plain"}},
            "malformed_json": lambda: {"url": "/search", "content": b'{"embedding": [1,', "headers": {
                "content-type": "application/json"}},
            "nan_embedding": lambda: {"url": "/search", "content": ("[" if False else '{"embedding": [NaN' +
                                                                    ", 0.5" * (self.dim - 1) + "]}").encode(),
                                      "headers": {"content-type": "application/json"}},
            "wrong_length": lambda: {"url": "/search", "json": {"embedding": [0.5] * (self.dim + 3)}},
            "bad_k": lambda: {"url": "/items/0/neighbours?k=100000"},
            "unknown_id": lambda: {"url": f"/items/{self.n + 7}/neighbours"},
            "text_query": lambda: {"url": "/knn-service", "json": {"text": "a red star", "num_images": 5}},
        }[kind]()


async def run_round(base: str, load: Load, clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` concurrent loops for ``seconds`` (or ``max_requests`` in all); per-request records."""
    import httpx

    records: List[Tuple[str, int, float, Optional[int]]] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: "httpx.AsyncClient") -> None:
        while time.perf_counter() < deadline and len(records) < max_requests:
            label, method, kw, expect = load.next()
            t0 = time.perf_counter()
            try:
                r = await c.request(method, **kw)
                status = r.status_code
            except httpx.TransportError:  # a dropped connection counts as a failure, not a crash of the client
                status = 0
            records.append((label, status, time.perf_counter() - t0, expect))

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return {"records": records, "wall": time.perf_counter() - t0}


def summarise(rnd: dict, rss_before: float, rss_after: float) -> dict:
    rec = rnd["records"]
    good = [r for r in rec if r[3] is None]
    bad = [r for r in rec if r[3] is not None]
    lat = np.array([r[2] for r in good]) * 1000 if good else np.zeros(1)
    by_status = Counter(str(r[1]) for r in rec)
    return {
        "requests": len(rec), "good": len(good), "bad": len(bad), "wall_s": rnd["wall"],
        "qps": len(rec) / rnd["wall"], "good_qps": len(good) / rnd["wall"],
        "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "upload_p50_ms": float(np.percentile([r[2] * 1000 for r in good if r[0] == "upload"] or [0], 50)),
        "status": dict(sorted(by_status.items())),
        "bad_by_kind": dict(sorted(Counter(f"{r[0][4:]}→{r[1]}" for r in bad).items())),
        "5xx": sum(1 for r in rec if r[1] >= 500 or r[1] == 0),
        "good_not_200": sum(1 for r in good if r[1] != 200),
        "bad_not_expected_4xx": sum(1 for r in bad if not (400 <= r[1] < 500 and r[1] == r[3])),
        "rss_before_mb": rss_before, "rss_after_mb": rss_after,
    }


def print_table(rounds: List[dict], clients: int, seconds: float) -> str:
    head = ("| round | requests | QPS (all) | good QPS | p50 ms | p95 ms | p99 ms | 5xx | bad → 4xx | "
            "server RSS before → after (MB) |")
    lines = [f"{clients} clients, {seconds:g} s per round, loopback", "", head, "|" + "---|" * 10]
    for i, s in enumerate(rounds, 1):
        lines.append(f"| {i} | {s['requests']:,} | {s['qps']:.1f} | {s['good_qps']:.1f} | {s['p50_ms']:.1f} | "
                     f"{s['p95_ms']:.1f} | {s['p99_ms']:.1f} | {s['5xx']} | "
                     f"{s['bad'] - s['bad_not_expected_4xx']}/{s['bad']} | "
                     f"{s['rss_before_mb']:.0f} → {s['rss_after_mb']:.0f} |")
    lines += ["", "responses by status: " + "; ".join(f"round {i}: " + ", ".join(f"{k}×{v}" for k, v in
                                                                              s["status"].items())
                                                   for i, s in enumerate(rounds, 1))]
    lines += ["bad requests (kind→status): " + ", ".join(f"{k}×{v}" for k, v in rounds[-1]["bad_by_kind"].items())]
    text = "\n".join(lines)
    print(text)
    return text


def plot(rounds_raw: List[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for i, rnd in enumerate(rounds_raw, 1):
        lat = np.sort([r[2] * 1000 for r in rnd["records"] if r[3] is None])
        if len(lat):
            ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=f"round {i}")
    ax.set_xscale("log")
    ax.set_xlabel("latency of good requests (ms)")
    ax.set_ylabel("fraction of requests")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


async def main_async(a: argparse.Namespace) -> int:
    import httpx

    from unicom.formats.atomic_io import write_json

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    index = Path(a.index) if a.index else make_sample_index(work)
    images = query_images(index)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(index, port, a.threads)
    try:
        health = await wait_healthy(base, proc)
        load = Load(images, health["index"]["items"], health["index"]["dim"], a.k, a.bad_share, a.seed)
        await run_round(base, load, a.clients, min(3.0, a.seconds), 200)  # warm-up: first batches, caches
        rounds, raw = [], []
        for _ in range(a.rounds):
            before = rss_mb(proc.pid)
            rnd = await run_round(base, load, a.clients, a.seconds, a.max_requests)
            raw.append(rnd)
            rounds.append(summarise(rnd, before, rss_mb(proc.pid)))
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            healthz = (await c.get("/healthz")).status_code == 200
            metrics = (await c.get("/metrics")).text
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    table = print_table(rounds, a.clients, a.seconds)
    growth = rounds[-1]["rss_after_mb"] - rounds[-1]["rss_before_mb"] if len(rounds) > 1 else 0.0
    checks = {
        "no 5xx": all(s["5xx"] == 0 for s in rounds),
        "every bad request 4xx (its expected status)": all(s["bad_not_expected_4xx"] == 0 for s in rounds),
        "every good request 200": all(s["good_not_200"] == 0 for s in rounds),
        "healthz OK after the load": healthz,
        f"no memory growth in the last round (≤ {a.rss_slack_mb:g} MB)": growth <= a.rss_slack_mb,
        "metrics split decode/encode/search": all(f'stage="{s}"' in metrics for s in ("decode", "encode", "search")),
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    out = {"clients": a.clients, "seconds": a.seconds, "index": str(index), "rounds": rounds,
           "rss_growth_last_round_mb": growth, "checks": checks, "table": table,
           "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    write_json(work / "serve_load.json", out)
    plot(raw, work / "serve_load.png")
    print(f"results: {work / 'serve_load.json'}, {work / 'serve_load.png'}")
    return 0 if all(checks.values()) else 1


def main(argv=None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
