"""Published Recall@1 of the released Unicom encoders (``unicom-eval --compare official``).

Source: the official repository deepglint/unicom, ``unicom/README.md``, the tables "Result of
Zero-Shot Image Retrieval" and "Result of Supervised Image Retrieval" (R@1 in %, evaluated with
``unicom/retrieval.py``, which reports R@1 only). They are stored here once; the comparison
column is ``published`` and the difference ``measured - published`` in percentage points.

* Zero-shot: the released encoder (``--model ViT-B/32`` …) on the benchmark's test split.
* Supervised: the released encoder fine-tuned on the benchmark's train split with the official
  recipe, which ``make finetune`` runs from the ``configs/finetune/`` presets. An export of
  such a run is recognised from its run folder: ``export/config.json`` names the run
  (``extra.run``; the export also sits in ``RUN/export``), whose ``config.yaml`` records the
  training dataset (``run.dataset``) and the encoder it started from (``model.init_from``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

SOURCE = "deepglint/unicom, unicom/README.md (https://github.com/deepglint/unicom/blob/main/unicom/README.md)"
MODELS = ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px")

# unicom/README.md, "Result of Zero-Shot Image Retrieval": R@1 (%)
ZERO_SHOT: Dict[str, Tuple[float, float, float, float]] = {
    "cub": (83.7, 86.5, 88.5, 89.2),
    "cars": (95.9, 96.8, 96.9, 97.3),
    "sop": (70.0, 70.4, 72.7, 74.5),
    "inshop": (72.8, 74.6, 83.6, 86.7),
    "inaturalist": (64.6, 73.6, 77.1, 81.0),
}
# unicom/README.md, "Result of Supervised Image Retrieval": R@1 (%)
SUPERVISED: Dict[str, Tuple[float, float, float, float]] = {
    "sop": (87.1, 88.8, 89.9, 91.2),
    "inshop": (94.8, 95.5, 96.0, 96.7),
    "inaturalist": (72.8, 82.5, 85.4, 88.9),
}
TABLES = {"zero-shot": ZERO_SHOT, "supervised": SUPERVISED}
COMPARE_CHOICES = ("official",)


def canonical_model(name: Optional[str]) -> Optional[str]:
    """The released model ``name`` denotes (case and ``-``/``/`` spelling forgiven), or None."""
    if not name:
        return None

    def norm(text: str) -> str:
        return str(text).strip().lower().replace("-", "/").replace("_", "/").replace("@336px", "/336")

    for m in MODELS:
        if norm(name) == norm(m):
            return m
    return None


def published_r1(model: str, benchmark: str, setting: str = "zero-shot") -> Optional[float]:
    """Published R@1 in % of released ``model`` on ``benchmark`` (``zero-shot`` or
    ``supervised``), or None when the README has no such figure."""
    from unicom.datasets.registry import canonical_name

    key = canonical_name(benchmark)
    row = TABLES[setting].get(key)
    m = canonical_model(model)
    return None if row is None or m is None else row[MODELS.index(m)]


def _read_yaml(path: Path) -> Dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def finetune_origin(model: str) -> Optional[Dict[str, str]]:
    """For an export folder of a fine-tuning run, ``{"model": released name, "dataset": name,
    "run": folder}``; None for anything else (a released name, another run, a file)."""
    import json

    from unicom.datasets.registry import canonical_name

    export = Path(str(model)).expanduser()
    if (export / "export").is_dir() and not (export / "config.json").is_file():
        export = export / "export"  # the run folder itself
    cfg_file = export / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        extra = json.loads(cfg_file.read_text()).get("extra") or {}
    except (OSError, ValueError):
        return None
    candidates = [export.parent] + ([Path(extra["run"])] if extra.get("run") else [])
    for run in candidates:
        run_cfg = run / "config.yaml"
        if not run_cfg.is_file():
            continue
        cfg = _read_yaml(run_cfg)
        dataset = canonical_name(str((cfg.get("run") or {}).get("dataset") or "shards"))
        init = canonical_model((cfg.get("model") or {}).get("init_from"))
        if init is not None and dataset in SUPERVISED:
            return {"model": init, "dataset": dataset, "run": str(run)}
        return None
    return None


def comparison_basis(model: Optional[str]) -> Dict[str, Any]:
    """What ``--compare official`` compares ``model`` with: ``{"setting": "zero-shot", "model":
    name}`` for a released encoder, ``{"setting": "supervised", "model", "dataset", "run"}`` for
    a fine-tuning export. A ValueError (one line) for anything else, before any work."""
    released = canonical_model(model)
    if released is not None:
        return {"setting": "zero-shot", "model": released}
    origin = finetune_origin(model) if model else None
    if origin is not None:
        return {"setting": "supervised", **origin}
    raise ValueError(f"--compare official: {model or 'these embeddings'} is neither a released encoder "
                     f"({', '.join(MODELS)}) nor the export of a `make finetune` run on "
                     f"{', '.join(SUPERVISED)} started from one; the published table has no figure for it")


def compare(results: Dict[str, Any], basis: Dict[str, Any]) -> Dict[str, Any]:
    """The ``published`` record of one benchmark's results: measured and published R@1 (%) and
    their difference; published is None where the README has no figure (or, for a fine-tuned
    encoder, where the benchmark is not the dataset it was fine-tuned on)."""
    bench = str(results.get("benchmark"))
    measured = (results.get("metrics") or {}).get("R@1")
    pub = published_r1(basis["model"], bench, basis["setting"])
    if basis["setting"] == "supervised" and published_r1(basis["model"], basis["dataset"], "supervised") is not None:
        from unicom.datasets.registry import canonical_name

        if canonical_name(bench) != basis["dataset"]:
            pub = None
    m = None if measured is None else round(100.0 * float(measured), 2)
    return {"setting": basis["setting"], "model": basis["model"], "benchmark": bench, "measured_R@1": m,
            "published_R@1": pub, "difference": None if m is None or pub is None else round(m - pub, 2),
            "source": SOURCE}


def format_comparison(rows) -> str:
    """The printed side-by-side table (percent)."""
    head = f"{'benchmark':<12}  {'setting':<10}  {'model':<15}  {'R@1':>6}  {'published':>9}  {'diff':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        def cell(v, w):
            return f"{'n/a':>{w}}" if v is None else f"{v:>{w}.1f}" if w == 9 else f"{v:>{w}.2f}"
        lines.append(f"{r['benchmark']:<12}  {r['setting']:<10}  {r['model']:<15}  {cell(r['measured_R@1'], 6)}  "
                     f"{cell(r['published_R@1'], 9)}  {cell(r['difference'], 6)}")
    lines.append(f"published: {SOURCE}")
    return "\n".join(lines)
