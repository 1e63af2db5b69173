"""``python -m unicom.demo`` (``make demo``): sample set → tiny CLIP → cluster → train → evaluate → report.

Every step is a user-facing command (``make sample``, ``make clip``, ``make cluster``, ``make train``,
``unicom-train --dataset``, ``unicom-eval``) with the demo's settings, so the demo exercises the
real paths. The story it tells, on concepts no step trained on:

* pseudo classes from a CLIP pretrained on the sample's image–caption pairs against those from a
  random CLIP (purity / NMI against the hidden concepts of the shards);
* retrieval on the held-out concepts with the encoder trained on the pseudo classes, the same
  architecture untrained, the tiny CLIP's own image features, and the encoder trained on the
  ground-truth concepts (the supervised upper bound).

It also leaves ``OUTPUT/index`` (the shards embedded by the trained encoder), which ``make serve``
serves with the pseudo classes of ``OUTPUT/cluster``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path
from typing import Dict, List

from ..cli.flags import add_renamed
from .report import write_report
from .steps import command, make_argv, run_lanes, run_step, supports_flag, thread_env

ENCODERS = ("trained", "untrained", "clip", "supervised")
BENCHMARKS = ("sample", "digits")
DEFAULT_CLIP_WEIGHTS = "runs/clip/tinyclip_demo.safetensors"


def eval_command() -> List[str]:
    """The ``unicom-eval`` console script of this interpreter's environment (or ``python -m``)."""
    return command("unicom-eval", "retrieval_eval.cli")


def encoder_args(name: str, out: Path, clip_model: str, clip_weights: str) -> List[str]:
    """unicom-eval flags selecting one of the demo's encoders."""
    if name == "clip":
        return ["--clip-model", clip_model, "--clip-pretrained", clip_weights]
    folder = {"trained": "train", "untrained": "untrained", "supervised": "supervised"}[name]
    return ["--model", str(out / folder / "export")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m unicom.demo", description=(
        "Run the whole Unicom pipeline on the sample set on the CPU and write a report "
        "(Markdown + PNGs) to OUTPUT/REPORT.md."), formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--make", default="make", help="the make command to run the Makefile targets with")
    p.add_argument("--sample-dir", default="data/sample", help="sample set directory; made if missing")
    add_renamed(p, "--output", "--out", default="runs/demo", help="output folder for every step and the report")
    add_renamed(p, "--num-clusters", "--k", type=int, default=48, help="number of pseudo classes")
    p.add_argument("--clip-model", default="TinyCLIP-demo", help="open_clip model pretrained by `make clip` and "
                                                                   "used to cluster")
    p.add_argument("--clip-pretrained", default=DEFAULT_CLIP_WEIGHTS,
                   help="its weights file, made by `make clip` if missing (cached: delete it to retrain)")
    p.add_argument("--clip-args", default="", help="extra flags of `make clip` (python -m unicom.demo.clip_pretrain)")
    p.add_argument("--config", default="configs/demo.yaml", help="training preset (both trainings)")
    p.add_argument("--train-args", default="", help="extra unicom-train overrides (both trainings), e.g. data.epochs=1")
    p.add_argument("--cluster-args", default="", help="extra unicom-cluster flags")
    p.add_argument("--eval-args", default="", help="extra unicom-eval flags (e.g. --batch-size 64)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of every step (torch, OpenMP/faiss, BLAS): fixed, so that the numbers do not "
                        "depend on the machine's core count. One thread keeps a shared 2-core machine efficient "
                        "(the training preset uses one too; a second thread waits at every barrier under load)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of clustering and evaluation "
                                                           "(their results do not depend on it)")
    p.add_argument("--visualize", type=int, default=8, help="queries in the retrieval picture")
    p.add_argument("--benchmarks", nargs="+", default=["sample"], choices=BENCHMARKS,
                   help="benchmarks to evaluate on: the held-out concepts (sample), scikit-learn digits")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    from .untrained import export_untrained  # imports torch: kept out of --help

    repo = Path.cwd()
    out = Path(a.output)
    log = out / "demo.log"
    timings: Dict[str, float] = {}
    notes: List[str] = []
    t0 = time.time()
    os.environ.update(thread_env(a.threads))  # every subprocess inherits a fixed thread count
    shards = f"{a.sample_dir}/shards"
    common = {"SAMPLE_DIR": a.sample_dir, "DATA": shards}
    workers = f"--workers {a.workers}"

    def step(title: str, argv_: List[str], tag: str = "") -> None:
        run_step(title, argv_, repo, log, timings, tag)

    def cluster(name: str, weights: str, tag: str) -> None:
        step(f"make cluster ({'pretrained' if weights != 'none' else 'random'} CLIP)", make_argv(a.make, "cluster", {
            **common, "OUT": str(out / name), "NUM_CLUSTERS": str(a.num_clusters), "CLIP_MODEL": a.clip_model,
            "CLIP_PRETRAINED": weights, "CLUSTER_ARGS": f"{workers} {a.cluster_args}".strip()}), tag)

    def pseudo_label_lane() -> None:  # the paper's pipeline: CLIP → pseudo classes → Unicom encoder
        step("make clip", make_argv(a.make, "clip", {"SAMPLE_DIR": a.sample_dir, "CLIP_WEIGHTS": a.clip_pretrained,
                                                     "CLIP_ARGS": f"--threads {a.threads} {a.clip_args}".strip()}),
             "unicom")
        cluster("cluster", a.clip_pretrained, "unicom")
        step("make train", make_argv(a.make, "train", {
            **common, "OUT": str(out / "cluster"), "CONFIG": a.config, "RUN": str(out / "train"),
            "TRAIN_ARGS": a.train_args}), "unicom")
        # the index `make serve` serves (with the pseudo classes of OUT/cluster): the shards embedded by
        # the trained encoder; a few seconds, and no figure of the report depends on it
        step("unicom-embed (the index of make serve)", command("unicom-embed", "unicom.embed.cli") + [
            "--model", str(out / "train" / "export"), "--data", shards, "--output", str(out / "index"),
            "--index-type", "flat", "--workers", str(a.workers), "--batch-size", "128", "--overwrite", "--no-progress"],
            "unicom")  # --overwrite: a retrained encoder is never served with the old vectors

    encoders = list(ENCODERS)
    train_cmd = command("unicom-train", "unicom.train.cli")
    supervised = supports_flag(train_cmd, "--dataset")

    def baseline_lane() -> None:  # the comparisons: random-CLIP clusters, the supervised upper bound
        cluster("cluster_random_clip", "none", "baselines")
        if supervised:
            step("unicom-train --dataset shards (ground-truth concepts)", train_cmd + [
                "--dataset", "shards", "--data", shards, "--label-key", "concept_id", "--output",
                str(out / "supervised"), "--config", a.config, "--resume", *shlex.split(a.train_args)], "baselines")

    step("make sample", make_argv(a.make, "sample", {"SAMPLE_DIR": a.sample_dir}))
    run_lanes([pseudo_label_lane, baseline_lane])
    export_untrained(out / "train" / "export", out / "untrained" / "export")
    if not supervised:
        encoders.remove("supervised")
        notes.append("The supervised upper bound is skipped: this `unicom-train` has no `--dataset` flag (training "
                     "on labelled sources), so the encoder trained on the ground-truth concepts cannot be made.")

    evals = []
    for bench in a.benchmarks:
        for enc in encoders:
            argv_ = eval_command() + [
                "--benchmark", bench, "--data-root", a.sample_dir,
                *encoder_args(enc, out, a.clip_model, a.clip_pretrained),
                "--output", str(out / "eval" / f"{bench}_{enc}.json"), "--workers", str(a.workers)]
            if enc == "trained" and bench == "sample" and a.visualize > 0:
                argv_ += ["--visualize", str(a.visualize), "--visualize-out", str(out / "retrieval_sample.png")]
            evals.append((f"unicom-eval {bench} / {enc}", argv_ + shlex.split(a.eval_args)))
    # the evaluations are independent: two lanes, alternating
    run_lanes([lambda part=evals[i::2], tag=f"eval{i + 1}": [step(t, v, tag) for t, v in part] for i in range(2)])

    timings["total"] = time.time() - t0
    report = write_report(out, timings, k=a.num_clusters, benchmarks=a.benchmarks, encoders=encoders,
                          clip_weights=Path(a.clip_pretrained), notes=notes)
    print("\n" + report)
    print(f"\nreport written to {out / 'REPORT.md'} (demo took {timings['total']:.0f} s)")
    print(f"search it in a browser: make serve INDEX={out / 'index'} CLUSTERS={out / 'cluster'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
