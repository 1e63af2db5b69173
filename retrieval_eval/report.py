"""The printed table of an evaluation (the JSON is written by ``outputs``).

JSON keys: ``benchmark``, ``protocol``, ``encoder``, ``sizes`` (queries, gallery, classes, and
the counts before skipping), ``skipped`` (per reason, for queries and gallery, plus the first
few keys), ``metrics`` (fractions in [0, 1]; counts as integers), ``metrics_with_distractors``
and ``distractors`` (with ``--distractors``), ``settings`` (including ``max_r``, the R cap of
MAP@R and RP, and ``avg_of_avgs``) and ``timing``; with ``--index-type`` ``index`` (and
``index_with_distractors``), with ``--dims`` ``compact``, with ``--compare official``
``published``. The printed table shows the metrics in percent, the way papers report them,
exact, through the index, and with distractors side by side.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{100.0 * value:6.2f}"


def _label(name: str, settings: Dict[str, Any]) -> str:
    if name in ("MAP@R", "RP") and "max_r" in settings:
        cap = settings["max_r"]
        return f"{name} (R<={cap})" if cap is not None else f"{name} (R uncapped)"
    return name


def format_table(results: Dict[str, Any]) -> str:
    """A plain-text table: a header, the sizes and conventions, then one metric per line in
    percent (counts as integers), with a second column when distractors were added."""
    enc = results.get("encoder") or {}
    sizes = results.get("sizes", {})
    settings = results.get("settings", {})
    gallery = "all-vs-all" if sizes.get("all_vs_all") else f"gallery {sizes.get('gallery')}"
    skipped = results.get("skipped", {}).get("total", 0)
    lines: List[str] = [
        f"benchmark {results.get('benchmark')} ({results.get('protocol')})   encoder {enc.get('name', '-')}",
        f"queries {sizes.get('queries')}   {gallery}" + (f"   classes {sizes['classes']}" if "classes" in sizes else "")
        + f"   skipped images {skipped}"]
    if "max_r" in settings:
        lines.append(f"MAP@R/RP: R capped at {settings['max_r']}" if settings["max_r"] is not None
                     else "MAP@R/RP: R uncapped")
        lines[-1] += ("   means: per class (avg of avgs)" if settings.get("avg_of_avgs") else "   means: per query")
    metrics = results.get("metrics", {})
    columns = [("value", metrics)]
    index = results.get("index")
    if index is not None:
        lines.append(index_line(index))
        columns.append(("index", index["metrics"]))
    extra = results.get("metrics_with_distractors")
    if extra is not None:
        d = results.get("distractors", {})
        lines.append(f"distractors {d.get('count')} from {d.get('source')}"
                     + (f"   skipped {sum(d.get('skipped', {}).values())}" if d.get("skipped") else ""))
        columns.append(("+distractors", extra))
        if results.get("index_with_distractors") is not None:
            lines.append("with distractors: " + index_line(results["index_with_distractors"]))
            columns.append(("index+distr.", results["index_with_distractors"]["metrics"]))
    labels = {name: _label(name, settings) for name in metrics}
    width = max([len(x) for x in labels.values()] + [6])
    widths = [max(7, len(title)) for title, _ in columns]
    header = f"{'metric':<{width}}" + "".join(f"  {title:>{w}}" for (title, _), w in zip(columns, widths))
    lines += [header, "-" * len(header)]
    for name in metrics:
        lines.append(f"{labels[name]:<{width}}" + "".join(f"  {_cell(vals.get(name)):>{w}}"
                                                          for (_, vals), w in zip(columns, widths)))
    return "\n".join(lines)


def index_line(index: Dict[str, Any]) -> str:
    """One line describing an evaluation index: factory string, parameters, size, recall."""
    rec = index.get("recall_vs_exact", {})
    code = index.get("code_bytes_per_vector")
    return (f"index {index.get('factory')}" + (f" ({index['search_params']})" if index.get("search_params") else "")
            + f"   {'n/a' if code is None else code} code bytes/vector, {index.get('index_bytes_per_vector')} on disk"
            + "   recall vs exact: " + ", ".join(f"{k} {100.0 * v:.2f}" for k, v in rec.items()))
