"""``unicom-eval``: retrieval evaluation of an encoder on a benchmark, with faiss.

    unicom-eval --benchmark cub --data-root /data/CUB_200_2011 --model ViT-B/32 --output runs/eval/cub
    unicom-eval --benchmark sample --data-root data/sample --model runs/train/export --visualize 8
    unicom-eval --benchmark digits --clip-model TinyCLIP-demo --clip-pretrained none
    unicom-eval --benchmark roxford5k --data-root data/datasets --model ViT-B/32 --distractors data/datasets/revisitop1m
    unicom-eval --embeddings emb.npy --labels labels.npy            # the metrics alone
    unicom-eval --benchmark cub --data-root /data --model ViT-B/32 --index-type IVF64,PQ32 --dims 64 128 256 \
        --pca-fit cub                                                # through an index; compact embeddings
    unicom-eval --benchmark cub cars sop inshop inaturalist --data-root /data --model ViT-B/32 --compare official

The flags come from ``retrieval_eval.options`` (each default written once). Nothing heavy is
imported before the arguments are parsed, so ``--help`` is fast. The table is printed before
any file is written; a failing write is a one-line error after it.
"""
from __future__ import annotations

import argparse
import pickle
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

from unicom.cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from unicom.cli.flags import fail
from unicom.cli.log_setup import setup_logging

from .options import EvalInputs, EvalOptions

PROG = "unicom-eval"
COMPARISON_FILE = "comparison.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "Embed a retrieval benchmark with an encoder and report Recall@K, MAP@R, R-precision, revisited "
        "Oxford/Paris mAP or GLDv2 mAP@100, using exact faiss search, optionally with distractors. Metric "
        "definitions and dataset layouts: docs/evaluation.md."), formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(p, EvalInputs)
    add_dataclass_arguments(p, EvalOptions)
    return p


def _check(inputs: EvalInputs, opts: EvalOptions) -> Optional[str]:
    sources = [x for x in (inputs.model, inputs.clip_model, inputs.embeddings) if x]
    if len(sources) != 1:
        return "give exactly one of --model, --clip-model or --embeddings"
    if inputs.benchmark is None and not (inputs.embeddings and inputs.labels):
        return "--benchmark is required (or --embeddings with --labels)"
    if inputs.labels and inputs.benchmark:
        return "--labels is for --embeddings without --benchmark (a benchmark brings its labels)"
    if inputs.clip_model and not inputs.clip_pretrained:
        return "--clip-model needs --clip-pretrained (a tag, an hf-hub: name, a file, or 'none' for a random model)"
    n = len(inputs.benchmark or [])
    if inputs.data_root and len(inputs.data_root) not in (1, max(n, 1)):
        return (f"--data-root: give one root (a folder holding every dataset) or one per benchmark ({n}), got "
                f"{len(inputs.data_root)}")
    if n > 1 and opts.output and opts.output.lower().endswith(".json"):
        return "--output with several benchmarks is a folder (each benchmark writes OUTPUT/NAME/results.json)"
    if n > 1 and (opts.visualize_path or opts.save_embeddings):
        return "--visualize-path and --save-embeddings name one file: evaluate one benchmark at a time with them"
    return None


def _roots(inputs: EvalInputs) -> List[Optional[str]]:
    names = inputs.benchmark or [None]
    roots = inputs.data_root or [None]
    return list(roots) * len(names) if len(roots) == 1 else list(roots)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = dataclass_from_namespace(EvalInputs, args)
    try:
        opts = dataclass_from_namespace(EvalOptions, args)
    except ValueError as exc:
        return fail(PROG, exc)
    setup_logging(PROG, inputs.log_level)
    from unicom.data.decode import set_policy

    set_policy(opts.decode_policy())  # the picture of results decodes like the evaluation
    problem = _check(inputs, opts)
    if problem:
        return fail(PROG, problem)

    from unicom.models.inference import NoReadableImagesError

    from .loaders import DatasetNotFoundError, UnreadableDataError, load_benchmark
    from .options import BadRequestError

    data_errors = (DatasetNotFoundError, FileNotFoundError, ValueError, UnreadableDataError, NoReadableImagesError,
                   pickle.UnpicklingError, RuntimeError)
    names = inputs.benchmark or [None]
    roots = _roots(inputs)
    try:
        # every benchmark's lists are read first, so a missing dataset stops the run before any embedding
        benches = [load_benchmark(n, r) if n else None for n, r in zip(names, roots)]
        if opts.compare:
            from .published import comparison_basis

            try:
                comparison_basis(None if inputs.clip_model else inputs.model)  # before the encoder is even loaded
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
        encoder = inputs.model
        if inputs.clip_model:
            from unicom.models.encoders import open_clip_encoder

            encoder = open_clip_encoder(inputs.clip_model, inputs.clip_pretrained, opts.device)
        elif encoder is not None and len(names) > 1:
            from unicom.models.encoders import as_encoder

            encoder = as_encoder(encoder, opts.device)  # loaded once for every benchmark
    except BadRequestError as exc:
        return fail(PROG, exc)
    except data_errors as exc:
        return fail(PROG, exc, code=1)
    comparisons = []
    for bench, root in zip(benches, roots):
        rc = _evaluate_one(inputs, opts, encoder, bench, root, len(names) > 1, comparisons)
        if rc:
            return rc
    if len(comparisons) > 1:
        from unicom.formats.atomic_io import write_json

        from .published import format_comparison

        print("\n" + format_comparison(comparisons), flush=True)
        if opts.output:
            path = Path(opts.output).expanduser() / COMPARISON_FILE
            write_json(path, comparisons)
            print(f"written: {path}")
    return 0


def _evaluate_one(inputs: EvalInputs, opts: EvalOptions, encoder, bench, root, several: bool,
                  comparisons: list) -> int:
    """Evaluate one benchmark, print its tables and write its files; returns the exit code."""
    from unicom.models.inference import NoReadableImagesError

    from .loaders import DatasetNotFoundError, UnreadableDataError
    from .options import BadRequestError
    from .pipeline import run_evaluation

    data_errors = (DatasetNotFoundError, FileNotFoundError, ValueError, UnreadableDataError, NoReadableImagesError,
                   pickle.UnpicklingError, RuntimeError)
    if several:
        opts = replace(opts, output=str(Path(opts.output).expanduser() / bench.name) if opts.output else None)
    try:
        ev = run_evaluation(encoder, bench if bench is not None else "embeddings", root,
                            embeddings=inputs.embeddings, labels=inputs.labels, distractors=inputs.distractors,
                            options=opts)
    except BadRequestError as exc:
        return fail(PROG, exc)
    except data_errors as exc:
        return fail(PROG, exc, code=1)
    from .outputs import write_outputs
    from .report import format_table

    print(format_table(ev.results), flush=True)
    if ev.results.get("compact"):
        from .compact import format_compact

        comp = ev.results["compact"]
        print(f"\ncompact embeddings (PCA fitted on {comp['pca_fit']['description']})" if comp["pca_fit"]
              else "\ncompact embeddings (truncation; --pca-fit adds PCA)")
        print(format_compact(comp["rows"], [k for k, v in ev.results["metrics"].items() if isinstance(v, float)]),
              flush=True)
    if ev.results.get("published"):
        from .published import format_comparison

        comparisons.append(ev.results["published"])
        if not several:
            print("\n" + format_comparison(comparisons), flush=True)
    try:
        written = write_outputs(ev, opts)
    except OSError as exc:
        return fail(PROG, f"could not write the results ({exc}); the table above is all that was kept", code=1)
    except RuntimeError as exc:  # FolderLockedError: another job writes that folder
        return fail(PROG, exc, code=1)
    for path in written:
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
