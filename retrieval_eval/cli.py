"""``unicom-eval``: retrieval evaluation of an encoder on a benchmark, with faiss.

    unicom-eval --benchmark cub --data-root /data/CUB_200_2011 --model ViT-B/32 --output runs/eval/cub
    unicom-eval --benchmark sample --data-root data/sample --model runs/train/export --visualize 8
    unicom-eval --benchmark digits --clip-model TinyCLIP-demo --clip-pretrained none
    unicom-eval --benchmark roxford5k --data-root data/datasets --model ViT-B/32 --distractors data/datasets/revisitop1m
    unicom-eval --embeddings emb.npy --labels labels.npy            # the metrics alone

The flags come from ``retrieval_eval.options`` (each default written once). Nothing heavy is
imported before the arguments are parsed, so ``--help`` is fast. The table is printed before
any file is written; a failing write is a one-line error after it.
"""
from __future__ import annotations

import argparse
import pickle
from typing import List, Optional

from unicom.cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from unicom.cli.flags import fail
from unicom.cli.log_setup import setup_logging

from .options import EvalInputs, EvalOptions

PROG = "unicom-eval"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "Embed a retrieval benchmark with an encoder and report Recall@K, MAP@R, R-precision, revisited "
        "Oxford/Paris mAP or GLDv2 mAP@100, using exact faiss search, optionally with distractors. Metric "
        "definitions and dataset layouts: docs/evaluation.md."), formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(p, EvalInputs)
    add_dataclass_arguments(p, EvalOptions)
    return p


def _check(inputs: EvalInputs) -> Optional[str]:
    sources = [x for x in (inputs.model, inputs.clip_model, inputs.embeddings) if x]
    if len(sources) != 1:
        return "give exactly one of --model, --clip-model or --embeddings"
    if inputs.benchmark is None and not (inputs.embeddings and inputs.labels):
        return "--benchmark is required (or --embeddings with --labels)"
    if inputs.labels and inputs.benchmark:
        return "--labels is for --embeddings without --benchmark (a benchmark brings its labels)"
    if inputs.clip_model and not inputs.clip_pretrained:
        return "--clip-model needs --clip-pretrained (a tag, an hf-hub: name, a file, or 'none' for a random model)"
    return None


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
    problem = _check(inputs)
    if problem:
        return fail(PROG, problem)

    from unicom.models.inference import NoReadableImagesError

    from .loaders import DatasetNotFoundError, UnreadableDataError
    from .pipeline import run_evaluation

    data_errors = (DatasetNotFoundError, FileNotFoundError, ValueError, UnreadableDataError, NoReadableImagesError,
                   pickle.UnpicklingError, RuntimeError)
    try:
        encoder = inputs.model
        if inputs.clip_model:
            from unicom.models.encoders import open_clip_encoder

            encoder = open_clip_encoder(inputs.clip_model, inputs.clip_pretrained, opts.device)
        ev = run_evaluation(encoder, inputs.benchmark or "embeddings", inputs.data_root, embeddings=inputs.embeddings,
                            labels=inputs.labels, distractors=inputs.distractors, options=opts)
    except data_errors as exc:
        return fail(PROG, exc, code=1)
    from .outputs import write_outputs
    from .report import format_table

    print(format_table(ev.results), flush=True)
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
