"""The evaluation, end to end: benchmark → embeddings → (skip exclusion) → search → metrics →
results dict; ``outputs.write_outputs`` then writes the JSON, the per-class JSON and the picture.
``retrieval_eval.evaluate`` is ``evaluate`` here.

Skipped images are excluded consistently: an image that fails to open (or a NaN row of
precomputed embeddings) is dropped from the queries *and* from the gallery, matched by its
key (the file path), and dropped gallery items leave every ground-truth list. The metrics are
therefore those of the benchmark minus the unreadable images; the counts are reported.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from unicom.formats.atomic_io import read_npy
from unicom.runtime.precision import resolve_precision

from .knn import search_device_for
from .loaders import LABELLED, Benchmark, ImageSet, load_benchmark
from .loaders.base import UnreadableDataError, missing_file_error
from .options import BadRequestError, EvalOptions
from .scoring import Example, score

log = logging.getLogger(__name__)
MAX_KEYS_REPORTED = 20


@dataclass
class Evaluation:
    """What one run produced, before anything is written: the results dict, the per-class
    records (labelled benchmarks), the picture's examples and the embeddings."""

    results: Dict[str, Any]
    bench: Benchmark
    examples: List[Example]
    per_class: Optional[List[Dict[str, Any]]] = None
    embeddings: Optional[np.ndarray] = None


def _load_array(x, what: str) -> np.ndarray:
    if isinstance(x, (str, os.PathLike)):
        if not Path(x).is_file():
            raise FileNotFoundError(f"{what} file not found: {x}")
        return read_npy(x)
    return np.asarray(x)


def check_images_present(bench: Benchmark, probe: int = 20) -> None:
    """Raise ``DatasetNotFoundError`` when none of the first ``probe`` image files of a set
    exists (the images were not unpacked where the benchmark expects them)."""
    for s in (bench.queries, bench.gallery):
        if s is None:
            continue
        paths = [x for x in s.items[:probe] if isinstance(x, str)]
        if paths and not any(os.path.isfile(p) for p in paths):
            raise missing_file_error(bench.name, paths[:1], bench.source or "(see docs/evaluation.md)",
                                     hint=f"none of the first {len(paths)} images listed by the benchmark exists; "
                                          "unpack the images where the split files expect them")


def labels_benchmark(labels, gallery_labels=None, name: str = "embeddings") -> Benchmark:
    """A labelled benchmark without images, for precomputed embeddings with label files."""
    q = _load_array(labels, "labels").astype(np.int64).ravel()
    g = None if gallery_labels is None else ImageSet([None] * len(np.ravel(gallery_labels)),
                                                     labels=_load_array(gallery_labels, "gallery labels").ravel())
    return Benchmark(name, LABELLED, ImageSet([None] * len(q), labels=q), g, source="precomputed embeddings")


def _split_precomputed(bench: Benchmark, emb: np.ndarray):
    nq = len(bench.queries)
    ng = 0 if bench.all_vs_all else len(bench.gallery)
    if emb.ndim != 2 or len(emb) != nq + ng:
        raise ValueError(f"precomputed embeddings have shape {emb.shape}; {bench.name} needs {nq + ng} rows "
                         f"({nq} queries" + (f" then {ng} gallery items" if ng else "") + ", in benchmark order)")
    emb = emb.astype(np.float32, copy=False)
    return emb[:nq], (None if bench.all_vs_all else emb[nq:])


def _nan_skips(emb: Optional[np.ndarray]) -> Dict[int, str]:
    if emb is None:
        return {}
    return {int(i): "nan_row" for i in np.flatnonzero(~np.isfinite(emb).all(axis=1))}


def _exclude(bench: Benchmark, q_skip: Dict[int, str], g_skip: Dict[int, str]):
    """Drop every item whose key failed anywhere; returns (benchmark, masks, report)."""
    failed = {bench.queries.keys[i] for i in q_skip}
    if not bench.all_vs_all:
        failed |= {bench.gallery.keys[i] for i in g_skip}
    q_keep = np.array([k not in failed for k in bench.queries.keys], bool)
    g_keep = None if bench.all_vs_all else np.array([k not in failed for k in bench.gallery.keys], bool)
    report = {"queries": dict(Counter(q_skip.values())), "gallery": dict(Counter(g_skip.values())),
              "total": len(failed), "queries_dropped": int((~q_keep).sum()),
              "gallery_dropped": int((~g_keep).sum()) if g_keep is not None else int((~q_keep).sum()),
              "keys": sorted(failed)[:MAX_KEYS_REPORTED]}
    if not failed:
        return bench, q_keep, g_keep, report
    return bench.subset(q_keep, g_keep), q_keep, g_keep, report


def _resolve_benchmark(benchmark, data_root, embeddings, labels, benchmark_options) -> Benchmark:
    if isinstance(benchmark, Benchmark):
        return benchmark
    if embeddings is not None and labels is not None and benchmark in (None, "embeddings"):
        return labels_benchmark(labels)
    if benchmark is None:
        raise ValueError("name a benchmark, or give embeddings together with labels")
    return load_benchmark(benchmark, data_root, **(benchmark_options or {}))


def _embed_benchmark(enc, bench: Benchmark, opts: EvalOptions, timing: Dict[str, float]):
    from unicom.models.encoders import parameter_count
    from unicom.models.inference import embed_images

    check_images_present(bench)
    kw = dict(batch_size=opts.batch_size, workers=opts.workers, precision=opts.precision, progress=opts.progress)
    q_res = embed_images(enc, bench.queries.items, boxes=bench.queries.boxes,
                         desc=f"{bench.name} queries" if not bench.all_vs_all else bench.name, **kw)
    g_res = None if bench.all_vs_all else embed_images(enc, bench.gallery.items, boxes=bench.gallery.boxes,
                                                       desc=f"{bench.name} gallery", **kw)
    timing["embed_seconds"] = round(q_res.seconds + (g_res.seconds if g_res else 0.0), 3)
    n_img = len(bench.queries) + (0 if g_res is None else len(bench.gallery))
    timing["images_per_second"] = round(n_img / max(timing["embed_seconds"], 1e-9), 1)
    info = {**enc.describe(), "name": enc.source, "parameters": parameter_count(enc),
            "embed_dim": int(q_res.embeddings.shape[1]), "device": str(enc.device),
            "precision": resolve_precision(opts.precision, enc.device)}
    return (q_res.embeddings, None if g_res is None else g_res.embeddings, q_res.skipped,
            {} if g_res is None else g_res.skipped, info)


def run_evaluation(encoder: Any = None, benchmark: Union[str, Benchmark, None] = "sample", data_root=None, *,
                   embeddings=None, labels=None, distractors=None, benchmark_options: Optional[Dict[str, Any]] = None,
                   options: Optional[EvalOptions] = None) -> Evaluation:
    """Everything but the writing: see ``evaluate``. Images (benchmark and distractors) are
    decoded under the options' decode policy (``--background``, ``--max-image-pixels``)."""
    from unicom.data.decode import using_policy

    opts = options or EvalOptions()
    with using_policy(opts.decode_policy()):
        return _run_evaluation(encoder, benchmark, data_root, embeddings, labels, distractors, benchmark_options,
                               opts)


def _run_evaluation(encoder, benchmark, data_root, embeddings, labels, distractors, benchmark_options,
                    opts: EvalOptions) -> Evaluation:
    t_start = time.time()
    bench = _resolve_benchmark(benchmark, data_root, embeddings, labels, benchmark_options)
    sizes_before = bench.sizes()
    timing: Dict[str, float] = {}
    enc = None
    basis = _compare_basis(opts, encoder, embeddings)
    if embeddings is not None:
        q_emb, g_emb = _split_precomputed(bench, _load_array(embeddings, "embeddings"))
        plan = preflight(opts, bench, int(q_emb.shape[1]), data_root, have_encoder=False)
        q_skip, g_skip = _nan_skips(q_emb), _nan_skips(g_emb)
        enc_info: Dict[str, Any] = {"name": "precomputed", "kind": "embeddings",
                                    "file": str(embeddings) if isinstance(embeddings, (str, os.PathLike)) else None,
                                    "embed_dim": int(q_emb.shape[1])}
    else:
        if encoder is None:
            raise ValueError("give an encoder (a unicom.load name or path, an open_clip model) or precomputed "
                             "embeddings")
        from unicom.models.encoders import as_encoder

        enc = as_encoder(encoder, opts.device)
        plan = preflight(opts, bench, int(enc.embed_dim), data_root, have_encoder=True)
        q_emb, g_emb, q_skip, g_skip, enc_info = _embed_benchmark(enc, bench, opts, timing)
    all_emb = q_emb if g_emb is None else np.concatenate([q_emb, g_emb])

    bench, q_keep, g_keep, skipped = _exclude(bench, q_skip, g_skip)
    q_emb = q_emb[q_keep]
    if g_emb is not None:
        g_emb = g_emb[g_keep]
    if len(q_emb) == 0 or (g_emb is not None and len(g_emb) == 0):
        raise UnreadableDataError(f"{bench.name}: nothing left to evaluate after skipping {skipped['total']} "
                                  "unreadable images")
    missing = int(bench.info.get("relevant_ids_not_in_index", 0) or 0)
    if missing:
        log.warning("%s: %d relevant ids of the solution are not in index.csv; they count in the mAP@100 "
                    "denominator (as in the Kaggle metric), so the figures are lower than if they were dropped",
                    bench.name, missing)

    search = dict(ks=opts.ks, max_r=opts.max_r, avg_of_avgs=opts.avg_of_avgs,
                  device=opts.search_device or search_device_for(opts.device), chunk_size=opts.chunk_size,
                  progress=opts.progress)
    scored = score(bench, q_emb, g_emb, n_examples=opts.visualize, example_k=opts.visualize_k, **search)
    timing["search_seconds"] = scored.settings.pop("search_seconds")
    settings = {"ks": [int(k) for k in (opts.ks or bench.ks)], **scored.settings, "batch_size": opts.batch_size,
                "workers": opts.workers, "decode": opts.decode_policy().record()}
    results: Dict[str, Any] = {
        "benchmark": bench.name, "protocol": bench.protocol, "data_root": None if data_root is None else str(data_root),
        "source": bench.source, "encoder": enc_info,
        "sizes": {**bench.sizes(), "queries_listed": sizes_before["queries"],
                  "gallery_listed": sizes_before["gallery"]},
        "skipped": skipped, "metrics": scored.metrics, "settings": settings, "timing": timing,
    }
    if opts.index_type:
        from .index_eval import evaluate_index

        t0 = time.time()
        results["index"] = evaluate_index(bench, q_emb, g_emb, opts.index_type, opts.index_params, search)
        timing["index_seconds"] = round(time.time() - t0, 3)
    if opts.dims:
        t0 = time.time()
        results["compact"] = _compact(bench, q_emb, g_emb, all_emb, scored.metrics, enc, plan, opts, search,
                                      results.get("index"))
        timing["compact_seconds"] = round(time.time() - t0, 3)
    if distractors is not None:
        _add_distractors(results, distractors, enc, bench, q_emb, g_emb, opts, search)
    if basis is not None:
        from .published import compare

        results["published"] = compare(results, basis)
    timing["total_seconds"] = round(time.time() - t_start, 3)
    return Evaluation(results, bench, scored.examples, scored.per_class, all_emb)


def _compare_basis(opts: EvalOptions, encoder: Any, embeddings: Any) -> Optional[Dict[str, Any]]:
    """``--compare official``: what the published table is compared with, checked before any
    work (a ValueError for an encoder the table has no figure for)."""
    if not opts.compare:
        return None
    from .published import comparison_basis

    spec: Optional[str] = None
    if embeddings is None:
        if isinstance(encoder, (str, os.PathLike)):
            spec = os.fspath(encoder)
        elif getattr(encoder, "kind", None) not in (None, "open_clip", "module"):
            spec = str(encoder.source)
    try:
        return comparison_basis(spec)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def preflight(opts: EvalOptions, bench: Benchmark, dim: int, data_root, have_encoder: bool) -> Dict[str, Any]:
    """Check ``--dims``, ``--index-type``/``--index-params`` and ``--pca-fit`` against the
    benchmark and the embedding size before anything is embedded; one-line ValueErrors."""
    try:
        return _preflight(opts, bench, dim, data_root, have_encoder)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def _preflight(opts: EvalOptions, bench: Benchmark, dim: int, data_root, have_encoder: bool) -> Dict[str, Any]:
    plan: Dict[str, Any] = {}
    if opts.dims:
        from .compact import check_dims

        check_dims(opts.dims, dim)
    if opts.index_type:
        from .index_eval import check_index

        check_index(opts.index_type, dim, len(bench.search_set), opts.index_params)
    if opts.pca_fit:
        from .compact import check_dims
        from .pca_fit import resolve_fit_source

        root = data_root[0] if isinstance(data_root, (list, tuple)) else data_root
        src = resolve_fit_source(opts.pca_fit, bench, root, have_encoder, opts.pca_fit_samples)
        if src.paths is not None:
            check_dims(opts.dims or [], dim, len(src.paths))
        plan["pca_fit"] = src
    return plan


def _compact(bench, q_emb, g_emb, all_emb, full_metrics, enc, plan, opts: EvalOptions, search, index_record):
    """The ``compact`` record: every metric through each reduction of ``--dims``."""
    from .compact import PCA, compact_rows, headline_metric

    pca = None
    fit_record = None
    src = plan.get("pca_fit")
    if src is not None:
        from .pca_fit import describe, load_fit_embeddings

        fit = load_fit_embeddings(src, enc, all_emb, precision=opts.precision, cache_root=opts.distractor_cache,
                                  batch_size=opts.batch_size, workers=opts.workers, progress=opts.progress,
                                  max_samples=opts.pca_fit_samples)
        pca = PCA.fit(fit, max(opts.dims or [1]))
        fit_record = {**describe(src, len(fit)), "explained_variance": {
            str(d): round(float(pca.explained[:d].sum()), 4) for d in opts.dims or []}}

    def score_fn(q, g):
        return score(bench, q, g, **search).metrics

    rows = compact_rows(q_emb, g_emb, opts.dims or [], score_fn, full_metrics, pca, index_record, opts.progress)
    return {"dims": list(opts.dims or []), "metric": headline_metric(bench.protocol), "pca_fit": fit_record,
            "rows": [r.record() for r in rows]}


def _add_distractors(results, source, enc, bench, q_emb, g_emb, opts: EvalOptions, search) -> None:
    """Score again with the distractors in the database: ``metrics_with_distractors`` (and,
    with ``--index-type``, the index over gallery and distractors: ``index_with_distractors``)."""
    from .distractors import load_distractors

    t0 = time.time()
    d = load_distractors(source, enc, precision=opts.precision, cache_root=opts.distractor_cache,
                         batch_size=opts.batch_size, workers=opts.workers, progress=opts.progress)
    results["timing"]["distractor_embed_seconds"] = round(time.time() - t0, 3)
    if len(d.features) and d.features.shape[1] != q_emb.shape[1]:
        raise ValueError(f"the distractors ({d.source}) are {d.features.shape[1]}-dimensional but the benchmark's "
                         f"embeddings are {q_emb.shape[1]}-dimensional: they come from another encoder")
    log.info("scoring %s with %d distractors", bench.name, len(d.features))
    scored = score(bench, q_emb, g_emb, distractors=d.features, **search)
    results["timing"]["distractor_search_seconds"] = scored.settings.pop("search_seconds")
    results["distractors"] = {**d.describe(), "search_k": scored.settings["search_k"],
                              "search_device": scored.settings["search_device"]}
    results["metrics_with_distractors"] = scored.metrics
    if opts.index_type:
        from .index_eval import evaluate_index

        results["index_with_distractors"] = evaluate_index(bench, q_emb, g_emb, opts.index_type, opts.index_params,
                                                           search, distractors=d.features)


def evaluate(encoder: Any = None, benchmark: Union[str, Benchmark, None] = "sample", data_root=None, *,
             embeddings=None, labels=None, distractors=None, benchmark_options: Optional[Dict[str, Any]] = None,
             **options: Any) -> Dict[str, Any]:
    """Evaluate an encoder (or precomputed embeddings) on a benchmark; returns the results dict.

    * ``encoder``: a ``unicom.load`` name or path, a ``(model, transform)`` pair, or a
      ``unicom.pretrained.load.LoadedEncoder`` (e.g. from ``unicom.models.encoders.open_clip_encoder``).
    * ``benchmark``: a name (``available_benchmarks()``) read from ``data_root``, or a
      ``Benchmark``. With ``embeddings`` and ``labels`` and no benchmark name, the metrics run
      on the embeddings alone (all-vs-all).
    * ``embeddings``: precomputed [n, D] (array or ``.npy``), rows = queries then gallery in
      benchmark order; NaN rows count as skipped images.
    * ``distractors``: a distractor source (``retrieval_eval.distractors``); the results then
      hold ``metrics_with_distractors`` beside ``metrics``.
    * ``options``: the fields of ``retrieval_eval.options.EvalOptions`` (``ks``, ``max_r``,
      ``avg_of_avgs``, ``output``, ``visualize``, ``device``, ``batch_size`` …), with its defaults.
    """
    from .outputs import write_outputs

    opts = EvalOptions(**options)
    ev = run_evaluation(encoder, benchmark, data_root, embeddings=embeddings, labels=labels, distractors=distractors,
                        benchmark_options=benchmark_options, options=opts)
    write_outputs(ev, opts)
    return ev.results


def evaluate_embeddings(embeddings, labels, gallery_embeddings=None, gallery_labels=None, **options: Any
                        ) -> Dict[str, Any]:
    """Recall@K, MAP@R and R-precision of embeddings alone (numpy arrays, no images).

    Without a gallery every row is a query against all the others (itself excluded by index);
    with one, the rows of ``embeddings`` search ``gallery_embeddings``. ``options``: ``ks``
    (default 1, 2, 4, 8), ``max_r``, ``avg_of_avgs``, ``device``. Returns the metrics dict.
    """
    opts = EvalOptions(**options)
    q = _load_array(embeddings, "embeddings").astype(np.float32)
    g = None if gallery_embeddings is None else _load_array(gallery_embeddings, "gallery embeddings").astype(np.float32)
    bench = labels_benchmark(labels, gallery_labels)
    if len(q) != len(bench.queries) or (g is not None and len(g) != len(bench.gallery)):
        raise ValueError("embeddings and labels must have the same number of rows")
    return score(bench, q, g, ks=opts.ks, max_r=opts.max_r, avg_of_avgs=opts.avg_of_avgs,
                 device=opts.search_device or opts.device).metrics
