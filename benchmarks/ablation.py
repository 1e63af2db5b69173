"""Ablation of dual partial selection on the demo (``make ablation``).

Pretrains the demo's tiny CLIP (``make clip``, cached) and clusters the sample set with it
once, as ``make demo`` does, then trains the demo preset four times — class-centre sampling
r ∈ {1.0, 0.1} × feature-dimension sampling on (the preset's rate) / off (all dimensions) —
and evaluates each run on the held-out `sample` benchmark and on `digits`. Prints a table,
writes it as JSON and Markdown, and a PNG bar chart. Every run uses the same seed and data.

Each evaluation also measures compact embeddings (``unicom-eval --dims``): R@1 with the
embedding truncated to its first d dimensions, and PCA-reduced to d dimensions with the PCA
fitted on the sample set's training shards (``--pca-fit sample``, never the held-out test
images), for d in ``--dims``. The second table and ``ablation_dims.png`` show these curves for
feature sampling on and off: truncation is where feature-dimension sampling should matter.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unicom.cli.flags import add_renamed  # noqa: E402
from unicom.demo.run import eval_command  # noqa: E402
from unicom.demo.steps import make_argv, run_step  # noqa: E402
from unicom.formats.atomic_io import atomic_write, write_json, write_text  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make", default="make", help="make command (default: make)")
    p.add_argument("--sample-dir", default="data/sample", help="sample set directory (default: data/sample)")
    add_renamed(p, "--output", "--out", default="runs/ablation", help="output directory (default: runs/ablation)")
    add_renamed(p, "--num-clusters", "--k", type=int, default=48, help="pseudo classes (default: 48, as the demo)")
    p.add_argument("--clip-pretrained", default="runs/clip/tinyclip_demo.safetensors",
                   help="the tiny CLIP's weights, made by `make clip` (as the demo)")
    p.add_argument("--config", default="configs/demo.yaml", help="training preset (default: configs/demo.yaml)")
    p.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.1], help="class sampling rates r")
    p.add_argument("--feature-rate", type=float, default=0.5, help="feature sampling rate when 'on' (default 0.5)")
    p.add_argument("--train-args", default="", help="extra overrides for every training run")
    p.add_argument("--json", default=None, help="write the table as JSON here (default: OUT/ablation.json)")
    p.add_argument("--dims", type=int, nargs="+", default=[8, 16, 32, 64, 128],
                   help="compact-embedding curve: evaluate each run cut (and PCA-reduced) to these dimensions "
                        "(default: 8 16 32 64 128; the demo embeds in 128)")
    a = p.parse_args(argv)
    repo, out = Path.cwd(), Path(a.output)
    log, timings = out / "ablation.log", {}
    common = {"SAMPLE_DIR": a.sample_dir, "DATA": f"{a.sample_dir}/shards", "OUT": str(out / "cluster")}
    run_step("make clip", make_argv(a.make, "clip", {"SAMPLE_DIR": a.sample_dir, "CLIP_WEIGHTS": a.clip_pretrained}),
             repo, log, timings)
    run_step("make cluster", make_argv(a.make, "cluster", {**common, "NUM_CLUSTERS": str(a.num_clusters),
                                                          "CLIP_PRETRAINED": a.clip_pretrained}), repo, log, timings)
    rows, curves = [], []
    for rate, feat_on in itertools.product(a.rates, (True, False)):
        name = f"r{rate:g}_feat{'on' if feat_on else 'off'}"
        fr = a.feature_rate if feat_on else 1.0
        overrides = f"head.sample_rate={rate} head.feature_sample_rate={fr} {a.train_args}".strip()
        run = out / name
        t0 = time.time()
        run_step(f"train {name}", make_argv(a.make, "train", {**common, "CONFIG": a.config, "RUN": str(run),
                                                                 "TRAIN_ARGS": overrides}), repo, log, timings)
        row = {"run": name, "class_sample_rate": rate, "feature_sample_rate": fr, "train_seconds": time.time() - t0}
        for bench in ("sample", "digits"):
            res_path = out / "eval" / f"{bench}_{name}.json"
            run_step(f"eval {bench} {name}", eval_command() + [
                "--benchmark", bench, "--data-root", a.sample_dir, "--model", str(run / "export"),
                "--output", str(res_path), "--no-progress", "--dims", *map(str, a.dims), "--pca-fit", "sample",
                "--distractor-cache", str(out / "feature_cache")], repo, log, timings)
            res = json.loads(res_path.read_text())
            metrics = res["metrics"]
            row[f"{bench} R@1"], row[f"{bench} MAP@R"] = metrics["R@1"], metrics["MAP@R"]
            curves += [{"run": name, "feature_sample_rate": fr, "class_sample_rate": rate, "benchmark": bench,
                        "method": r["method"], "dims": r["dims"], "R@1": r["metrics"]["R@1"]}
                       for r in res["compact"]["rows"] if r["dtype"] == "float32"]
        rows.append(row)
    cols = ["run", "class_sample_rate", "feature_sample_rate", "sample R@1", "sample MAP@R", "digits R@1",
            "digits MAP@R", "train_seconds"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    table = "\n".join(md)
    print("\n" + table)
    write_json(a.json or out / "ablation.json", rows)
    write_text(out / "ablation.md", table + "\n")
    _plot(rows, out / "ablation.png")
    dims_table = _dims_table(curves, a.dims)
    print("\nR@1 of compact embeddings (truncated to the first d dimensions | PCA to d, fitted on the training "
          "shards)\n" + dims_table)
    write_json(out / "ablation_dims.json", curves)
    write_text(out / "ablation_dims.md", dims_table + "\n")
    _plot_dims(curves, out / "ablation_dims.png")
    return 0


def _dims_table(curves, dims) -> str:
    """Markdown: one line per run and benchmark, R@1 truncated | PCA at each d."""
    cols = ["run", "benchmark"] + [f"d={d}" for d in dims]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    keys = sorted({(c["run"], c["benchmark"]) for c in curves}, key=lambda k: (k[1], k[0]))
    for run, bench in keys:
        cells = []
        for d in dims:
            got = {c["method"]: c["R@1"] for c in curves if c["run"] == run and c["benchmark"] == bench
                   and c["dims"] == d}
            cells.append(f"{got.get('truncate', float('nan')):.3f} \\| {got.get('pca', float('nan')):.3f}")
        md.append(f"| {run} | {bench} | " + " | ".join(cells) + " |")
    return "\n".join(md)


def _plot_dims(curves, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = sorted({c["benchmark"] for c in curves})
    fig, axes = plt.subplots(1, len(benches), figsize=(5.5 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for i, run in enumerate(sorted({c["run"] for c in curves})):
            for method, style in (("truncate", "-"), ("pca", "--")):
                pts = sorted((c["dims"], c["R@1"]) for c in curves
                             if c["run"] == run and c["benchmark"] == bench and c["method"] == method)
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=f"C{i}", label=f"{run} {method}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dimensions")
        ax.set_ylabel("Recall@1")
        ax.set_title(bench)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["run"] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["sample R@1"] for r in rows], 0.4, label="sample R@1")
    ax.bar([i + 0.2 for i in x], [r["digits R@1"] for r in rows], 0.4, label="digits R@1")
    ax.set_xticks(list(x), names, rotation=15)
    ax.set_ylabel("Recall@1")
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png")


if __name__ == "__main__":
    raise SystemExit(main())
