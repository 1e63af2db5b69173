"""The demo report: CLIP pretraining, cluster quality, training loss and retrieval, as Markdown + PNGs."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..formats.atomic_io import write_json, write_text

ENCODER_TITLES = {
    "trained": "Unicom ViT trained on the pseudo classes",
    "untrained": "same ViT, random init",
    "clip": "tiny CLIP's own image features (pretrained, the clustering model)",
    "supervised": "Unicom ViT trained on the ground-truth concepts (upper bound)",
}
BENCH_METRICS = ("R@1", "MAP@R")


def _load_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def _loss_summary(log_csv: Path) -> Optional[Dict[str, float]]:
    if not log_csv.is_file():
        return None
    with open(log_csv) as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss") not in (None, "", "nan")]
    if not rows:
        return None
    losses = [float(r["loss"]) for r in rows]
    k = max(1, len(losses) // 10)  # mean over the first/last tenth: single steps are noisy
    return {"steps": int(float(rows[-1].get("step", len(rows)))), "first": sum(losses[:k]) / k,
            "last": sum(losses[-k:]) / k}


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def retrieval_rows(out: Path, benchmarks=("sample",), encoders=("trained", "untrained", "clip")) -> List[dict]:
    """One row per encoder: {encoder, <bench> <metric>: value} from ``OUT/eval/*.json``."""
    rows = []
    for enc in encoders:
        row = {"encoder": enc}
        for bench in benchmarks:
            res = _load_json(out / "eval" / f"{bench}_{enc}.json") or {}
            for m in BENCH_METRICS:
                row[f"{bench} {m}"] = (res.get("metrics") or {}).get(m)
        rows.append(row)
    return rows


def cluster_rows(out: Path) -> List[dict]:
    """Cluster quality of the pretrained and the random CLIP: {clip, samples, empty, purity, nmi}."""
    rows = []
    for clip, folder in (("pretrained", "cluster"), ("random init", "cluster_random_clip")):
        rep = _load_json(out / folder / "report.json")
        if rep is None:
            continue
        gt, sizes = rep.get("ground_truth") or {}, rep.get("cluster_sizes") or {}
        rows.append({"clip": clip, "samples": sizes.get("samples"), "empty": sizes.get("empty_clusters"),
                     "purity": gt.get("purity"), "nmi": gt.get("nmi")})
    return rows


def _clip_section(clip_weights: Optional[Path]) -> List[str]:
    info = _load_json(clip_weights.with_suffix(".json")) if clip_weights else None
    if not info:
        return []
    return ["## Tiny CLIP pretraining (`make clip`)", "",
            f"TinyCLIP-demo trained from random init with open_clip's contrastive loss on the {info['pairs']:,} "
            f"image–caption pairs of the training shards: {info['steps']} steps, loss "
            f"{info['loss_first_tenth']:.3f} (first tenth) → {info['loss_last_tenth']:.3f} (last tenth). "
            "The held-out concepts are never read.", ""]


def write_report(out: Path, timings: Dict[str, float], k: int, benchmarks=("sample",),
                 encoders=("trained", "untrained", "clip"), clip_weights: Optional[Path] = None,
                 notes: Sequence[str] = ()) -> str:
    """Write ``OUT/REPORT.md`` (and ``OUT/report.json``) and return the Markdown text."""
    out = Path(out)
    clusters = cluster_rows(out)
    loss = _loss_summary(out / "train" / "log.csv")
    rows = retrieval_rows(out, benchmarks, encoders)
    lines = ["# Unicom demo report", "",
             "The paper's story on the embedded sample set, on the CPU: a tiny CLIP pretrained on the sample's "
             "image–caption pairs embeds images and captions, faiss k-means makes pseudo classes, a tiny Unicom ViT "
             "trains on them with dual partial selection, and faiss retrieval evaluates it on concepts that no step "
             "trained on (the held-out concepts of the sample set).", ""]
    lines += _clip_section(clip_weights)
    lines += ["## Clustering", "", "| CLIP | K | samples | empty clusters | purity | NMI |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['clip']} | {k} | {r['samples']} | {r['empty']} | {_fmt(r['purity'])} | {_fmt(r['nmi'])} |"
              for r in clusters]
    lines += ["", "Purity and NMI against the hidden ground-truth concepts of the training shards (never used to "
              "cluster or train).", ""]
    if (out / "cluster" / "cluster_sizes.png").is_file():
        lines += ["![cluster sizes](cluster/cluster_sizes.png)", ""]
    if (out / "cluster" / "class_grid.png").is_file():
        lines += ["Twelve random pseudo classes of the pretrained CLIP, eight images each, titled with their "
                  "captions' most telling words:", "", "![pseudo classes](cluster/class_grid.png)", ""]
    lines += ["## Training on the pseudo classes", ""]
    if loss:
        lines += [f"Loss over {loss['steps']} steps: {loss['first']:.3f} (first tenth) → {loss['last']:.3f} "
                  "(last tenth).", ""]
    if (out / "train" / "loss.png").is_file():
        lines += ["![training loss](train/loss.png)", ""]
    head = ["encoder"] + [f"{b} {m}" for b in benchmarks for m in BENCH_METRICS]
    also = " (and scikit-learn digits)" if "digits" in benchmarks else ""
    lines += ["## Retrieval on the held-out concepts" + also,
              "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([ENCODER_TITLES[r["encoder"]]] + [_fmt(r[h]) for h in head[1:]]) + " |")
    lines.append("")
    lines += [f"Note: {n}" for n in notes] + ([""] if notes else [])
    if (out / "retrieval_sample.png").is_file():
        lines += ["Queries (left) and their nearest neighbours from the trained encoder; green = same concept, "
                  "red = another.", "", "![retrieval](retrieval_sample.png)", ""]
    lines += ["## Time", "", "Two lanes run side by side, one CPU thread each: the pseudo-label pipeline (CLIP, its "
              "clusters, training) and the baselines (random-CLIP clusters, supervised training); then the "
              "evaluations, two at a time. So the steps add up to more than the total.", "",
              "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in timings.items()]
    text = "\n".join(lines) + "\n"
    write_text(out / "REPORT.md", text)
    cluster_report = _load_json(out / "cluster" / "report.json")
    write_json(out / "report.json", {"clusters": clusters, "cluster": cluster_report, "loss": loss,
                                     "retrieval": rows, "notes": list(notes), "timings": timings})
    return text
