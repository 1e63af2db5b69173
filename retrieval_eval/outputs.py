"""Where ``unicom-eval`` writes, and the writing (after the table is printed).

``--output DIR`` (a folder): ``DIR/results.json``, ``DIR/per_class.json`` (labelled
benchmarks) and ``DIR/retrieval.png`` (with ``--visualize``), the folder locked while it is
written (``unicom.cli.run_lock``). For backward compatibility ``--output NAME.json`` writes that
file and puts the others beside it: ``NAME.per_class.json`` and ``NAME.png``. Every file is
written atomically.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from unicom.formats.atomic_io import write_json, write_npy

from .options import EvalOptions

RESULTS_FILE = "results.json"
PER_CLASS_FILE = "per_class.json"
PICTURE_FILE = "retrieval.png"
COMPACT_PLOT_FILE = "compact.png"


@dataclass
class OutputPaths:
    folder: Optional[Path]          # the locked output folder (None for a .json path or no output)
    results: Optional[Path]
    per_class: Optional[Path]
    picture: Optional[Path]
    compact_plot: Optional[Path] = None   # with --dims: the metric against dimension and bytes per vector


def output_paths(opts: EvalOptions, benchmark: str) -> OutputPaths:
    """The files a run writes, from ``--output``, ``--visualize`` and ``--visualize-path``."""
    out = None if opts.output is None else Path(opts.output).expanduser()
    if out is None:
        folder, results, per_class, picture = None, None, None, Path(f"{benchmark}_retrieval.png")
        compact = Path(f"{benchmark}_compact.png")
    elif out.suffix.lower() == ".json":
        folder, results = None, out
        per_class, picture = out.with_suffix(".per_class.json"), out.with_suffix(".png")
        compact = out.with_suffix(".compact.png")
    else:
        folder, results, per_class, picture = out, out / RESULTS_FILE, out / PER_CLASS_FILE, out / PICTURE_FILE
        compact = out / COMPACT_PLOT_FILE
    if opts.visualize_path:
        picture = Path(opts.visualize_path).expanduser()
    return OutputPaths(folder, results, per_class if results else None, picture if opts.visualize else None,
                       compact if opts.dims else None)


def write_outputs(ev, opts: EvalOptions) -> List[Path]:
    """Write what ``ev`` (a ``pipeline.Evaluation``) holds; returns the files written. The
    picture's path goes into the results before the JSON is written."""
    paths = output_paths(opts, ev.bench.name)
    written: List[Path] = []
    lock = contextlib.nullcontext()
    if paths.folder is not None:
        from unicom.cli.run_lock import lock_output_dir

        lock = lock_output_dir(paths.folder, "unicom-eval")
    with lock:
        if paths.picture is not None:
            ev.results["visualization"] = None
            if ev.bench.queries.has_images and ev.examples:
                from .visualize import save_grid

                save_grid(paths.picture, ev.bench, ev.examples, opts.visualize_k)
                ev.results["visualization"] = str(paths.picture)
                written.append(paths.picture)
        if paths.compact_plot is not None and ev.results.get("compact"):
            from .compact import plot_compact

            comp = ev.results["compact"]
            plot_compact(comp["rows"], comp["metric"], paths.compact_plot,
                         title=f"{ev.bench.name}: {(ev.results.get('encoder') or {}).get('name', '')}")
            comp["plot"] = str(paths.compact_plot)
            written.append(paths.compact_plot)
        if opts.save_embeddings and ev.embeddings is not None:
            write_npy(opts.save_embeddings, ev.embeddings)
            written.append(Path(opts.save_embeddings))
        if paths.per_class is not None and ev.per_class is not None:
            write_json(paths.per_class, {"benchmark": ev.bench.name, "max_r": ev.results["settings"].get("max_r"),
                                         "classes": ev.per_class})
            ev.results["per_class"] = str(paths.per_class)
            written.append(paths.per_class)
        if paths.results is not None:
            write_json(paths.results, ev.results)
            written.append(paths.results)
    return written
