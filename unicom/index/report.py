"""The index report: what was built, what it costs, and its recall against exact search.

Saved as ``report.json`` in the index folder and printed as a table:
  factory, n, d, recall@1 and recall@10 against exact, the tuned search parameters and the
  target, bytes per vector, the size on disk and the estimate, build time, queries per second.
"""
from __future__ import annotations

from typing import Any, Dict, List

from .memory import format_bytes

COLUMNS = ("index", "n", "recall@1", "recall@10", "params", "bytes/vec", "on disk", "estimate", "build s", "QPS")


def _params(p: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (p or {}).items()) or "-"


def report_row(r: Dict[str, Any]) -> List[str]:
    """One report (``report.json``'s dict) as the table's cells."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    return [str(r["factory"]), f"{r['n']:,}", pct(r.get("recall@1")), pct(r.get("recall@10")),
            _params(r.get("search_params", {})), f"{r['bytes_per_vector']:.1f}", format_bytes(r["bytes_on_disk"]),
            format_bytes(r["estimate_bytes"]) if r.get("estimate_bytes") is not None else "-",
            f"{r['build_s']:.1f}", f"{r['qps']:,.0f}" if r.get("qps") else "-"]


def format_table(rows: List[List[str]], columns=COLUMNS) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(str(c).ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def format_report(r: Dict[str, Any]) -> str:
    """The printed report of one index: the table, then the tuning outcome in words."""
    text = format_table([report_row(r)])
    if r.get("target_recall") is not None and r.get("search_params"):
        verdict = "reached" if r.get("reached") else "NOT reached (the largest value is used)"
        text += (f"\ntuned on {r['queries']} queries {r['query_source']}: recall@10 target "
                 f"{r['target_recall']:.2f} {verdict}")
    return text
