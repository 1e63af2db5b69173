"""Training configuration: nested dataclasses, read from YAML, overridden from the command line.

A config file holds any subset of the sections below; missing keys keep their defaults.
Overrides use dotted keys, ``optim.lr=1e-3`` or ``--set optim.lr=1e-3``; values are parsed as
YAML (``true``, ``null``, ``[0.9, 0.95]``, ``1e-3``). An unknown key is an error that lists the
keys of its section, so a typo never silently does nothing. Every value is converted to its
field's declared type when it is set (``1`` → ``1.0`` for a float, ``"1e-3"`` → ``0.001``) by
``unicom.cli.convert.convert``, the conversion every command's flags go through too, and a value
that does not fit is a one-line error naming the key and the type; the code downstream never
casts. The resolved config (file +
overrides + the run's paths) is written to ``RUN/config.yaml``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import yaml

from ..cli.convert import convert
from ..data.decode_options import DEFAULT_BACKGROUND, DEFAULT_MAX_PIXELS
from ..data.transforms import CLIP_MEAN, CLIP_STD
from ..losses.defaults import DEFAULT_SAMPLE_RATE, check_rate
from ..runtime.precision import PRECISIONS

TRANSFORMS = ("crop_flip", "origin_clip", "timm")  # data.transform (built in augment.py)


@dataclass
class ModelConfig:
    """The backbone. ``type: unicom_vit`` takes ``name`` as a ViT name (``ViT-B/32``,
    ``ViT-Tiny/16@64`` …) or a dict of ``ViTConfig`` fields; ``type: open_clip`` takes an
    open_clip model name and ``pretrained`` (a local weights file, or ``none``)."""

    type: str = "unicom_vit"
    name: Any = "ViT-B/32"
    embed_dim: Optional[int] = None        # None: the architecture's own
    pretrained: Optional[str] = None       # open_clip: weights file or "none"
    init_from: Optional[str] = None        # unicom_vit: start from an export dir / checkpoint dir / state-dict file
    head: str = "linear_bn"                # open_clip embedding head: linear_bn | bn
    drop_path: float = 0.0
    grad_checkpointing: bool = False
    sync_bn: bool = False                  # SyncBatchNorm for the BN layers when world size > 1


@dataclass
class HeadConfig:
    """The Partial FC margin-softmax head (``unicom.losses.PartialFC``)."""

    margin: str = "arcface"                # arcface | cosface | combined
    scale: float = 64.0
    m1: Optional[float] = None             # margins left None take the margin kind's defaults
    m2: Optional[float] = None             # (arcface m2=0.3, cosface m3=0.4; unicom.losses.margin)
    m3: Optional[float] = None
    straight_through: bool = False         # shift the target angle without gradient (official code)
    interclass_filter: float = 0.0         # drop non-target cosines above this (0: off)
    sample_rate: float = DEFAULT_SAMPLE_RATE  # class-centre sampling rate r (Partial FC's 0.1)
    feature_sample_rate: Optional[float] = None  # fraction of the D dims used per step (None/1.0: all)
    feature_sample_dim: Optional[int] = None     # or the number d' directly (wins over the rate)
    subcenters: int = 1
    lr_mult: float = 1.0                   # head LR = optim.lr * lr_mult
    weight_decay: Optional[float] = None   # None: optim.weight_decay


@dataclass
class OptimConfig:
    name: str = "adamw"                    # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9                  # sgd
    nesterov: bool = False                 # sgd
    clip_grad_norm: Optional[float] = None  # backbone gradient-norm clip; None/0: off


@dataclass
class ScheduleConfig:
    name: str = "cosine"                   # cosine | onecycle | constant
    warmup_epochs: float = 0.0             # linear warm-up length in epochs …
    warmup_steps: Optional[int] = None     # … or in steps (wins)
    min_lr_ratio: float = 0.0              # cosine floor, as a fraction of the peak LR
    pct_start: float = 0.1                 # onecycle: fraction of training spent rising
    div_factor: float = 25.0               # onecycle: start LR = peak / div_factor
    final_div_factor: float = 1e4          # onecycle: final LR = start LR / final_div_factor


@dataclass
class DataConfig:
    image_size: Optional[int] = None       # None: the model's input size
    batch_size: int = 128                  # per rank and per micro-step
    num_workers: int = 4
    shuffle_buffer: int = 2000             # samples shuffled together (a seeded block; see data.py)
    resampled: bool = False                # draw shards with replacement per stream (multi-node)
    samples_per_epoch: Optional[int] = None  # None: the number of labelled samples (sum of class_sizes)
    epochs: float = 1.0
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    crop_ratio: List[float] = field(default_factory=lambda: [0.75, 1.3333333333333333])
    hflip: float = 0.5
    mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: List[float] = field(default_factory=lambda: list(CLIP_STD))
    features_dir: Optional[str] = None     # None: the labels dir's sibling "features"
    transform: str = "crop_flip"           # crop_flip | origin_clip | timm (unicom/train/augment.py)
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"  # timm: RandAugment policy (official recipes)
    color_jitter: float = 0.4              # timm: colour jitter (ignored by timm while RandAugment is on)
    re_prob: float = 0.25                  # timm: random-erasing probability
    num_classes: Optional[int] = None      # labelled sources: head size (None: from the labels)
    check_files: bool = True               # labelled sources: every listed image must exist (checked up front)
    source_weight: float = 1.0             # mixed runs: sampling weight of the command line's source
    sources: List[Dict[str, Any]] = field(default_factory=list)  # mixed runs: more sources (docs/training.md)
    background: str = DEFAULT_BACKGROUND   # colour transparent images are composited onto (docs/images.md)
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are skipped as too_large; 0: no limit


@dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"                   # auto | cpu | cuda
    precision: str = "auto"                # auto | bf16 | fp16 | fp32 (auto: bf16 on GPUs and CPUs with native bf16)
    accum_steps: int = 1
    max_steps: Optional[int] = None        # cap the run (the schedule is fitted to it)
    log_every: int = 10
    ckpt_every: int = 1000                 # steps; 0: only at the end
    keep_checkpoints: int = 3              # newest step dirs kept; 0: keep all
    max_nonfinite: int = 5                 # abort after this many non-finite steps in a row
    tensorboard: bool = False
    progress: bool = True                  # tqdm bar on rank 0
    stop_after_steps: Optional[int] = None  # simulate a preemption: exit after N steps, no final save
    timing: bool = False                   # measure the head's share of step time (syncs CUDA)
    threads: Optional[int] = None          # torch intra-op threads per process (None: torch's default)
    tf32: bool = True                      # CUDA: TF32 tensor cores for fp32 matmuls (the head's logits)


@dataclass
class EvalConfig:
    """Evaluation while training (``unicom/train/eval_hook.py``): every ``every`` epochs the
    current encoder is exported to RUN/export-last and ``unicom-eval`` runs on ``benchmark``."""

    every: float = 0.0                     # epochs between evaluations; 0: off
    benchmark: Optional[str] = None        # None: the --dataset name (its test split)
    data_root: Optional[str] = None        # None: the --data-root
    batch_size: int = 128
    workers: int = 2
    device: Optional[str] = None           # None: the training device
    timeout_s: Optional[float] = None      # a hanging evaluation is stopped after this long (None: no limit)


@dataclass
class RunPaths:
    """Where the run reads and writes; filled from the command line."""

    data: Optional[str] = None
    labels: Optional[str] = None
    output: Optional[str] = None
    dataset: str = "shards"                # shards, or a labelled layout (sop, inshop, …, image_folder, csv)
    data_root: Optional[str] = None        # the labelled dataset's root (or CSV file)
    label_key: Optional[str] = None        # shards: read the label from each sample's json field


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunPaths = field(default_factory=RunPaths)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def _section_fields(section_obj) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section_obj)}


def config_from_dict(d: Optional[Dict[str, Any]], base: Optional[Config] = None) -> Config:
    """Build a ``Config`` from a nested dict (as read from YAML), on top of ``base``."""
    cfg = base if base is not None else Config()
    for section, values in (d or {}).items():
        if not hasattr(cfg, section) or not dataclasses.is_dataclass(getattr(cfg, section)):
            raise ValueError(f"unknown config section {section!r}; sections: {', '.join(_section_names())}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"config section {section!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value)
    return cfg


def describe_defaults() -> str:
    """Every overridable ``section.key`` with its built-in default, one per line (for --help)."""
    cfg = Config()
    lines = []
    for section in _section_names():
        if section == "run":  # paths come from --data/--labels/--output
            continue
        for name in _section_fields(getattr(cfg, section)):
            lines.append(f"  {section}.{name} = {getattr(getattr(cfg, section), name)!r}")
    return "\n".join(lines)


def _section_names() -> List[str]:
    return [f.name for f in dataclasses.fields(Config)]


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set ``section.key`` (e.g. ``optim.lr``) to ``value``; unknown names raise ValueError."""
    parts = dotted.split(".")
    if len(parts) != 2:
        raise ValueError(f"config key {dotted!r} must look like section.key (e.g. optim.lr)")
    section, key = parts
    if section not in _section_names():
        raise ValueError(f"unknown config section {section!r} in {dotted!r}; sections: {', '.join(_section_names())}")
    obj = getattr(cfg, section)
    fields = _section_fields(obj)
    if key not in fields:
        raise ValueError(f"unknown config key {dotted!r}; keys of {section!r}: {', '.join(fields)}")
    setattr(obj, key, convert(value, typing.get_type_hints(type(obj))[key], f"config key {dotted}"))


def parse_override(text: str):
    """``"optim.lr=1e-3"`` → ``("optim.lr", 0.001)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value (e.g. optim.lr=1e-3)")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() != "" else None
    return key.strip(), value


def load_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path} must hold a mapping of config sections")
        cfg = config_from_dict(d, cfg)
    for ov in overrides:
        key, value = parse_override(ov)
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check values that would otherwise fail deep inside the run."""
    if cfg.model.type not in ("unicom_vit", "open_clip"):
        raise ValueError(f"model.type must be unicom_vit or open_clip, got {cfg.model.type!r}")
    if cfg.optim.name not in ("adamw", "sgd"):
        raise ValueError(f"optim.name must be adamw or sgd, got {cfg.optim.name!r}")
    if cfg.schedule.name not in ("cosine", "onecycle", "constant"):
        raise ValueError(f"schedule.name must be cosine, onecycle or constant, got {cfg.schedule.name!r}")
    if cfg.train.precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {cfg.train.precision!r}")
    check_rate("head.sample_rate", cfg.head.sample_rate)
    if cfg.head.feature_sample_rate is not None:
        check_rate("head.feature_sample_rate", cfg.head.feature_sample_rate)
    if cfg.data.batch_size < 1:
        raise ValueError("data.batch_size must be ≥ 1")
    if cfg.train.accum_steps < 1:
        raise ValueError("train.accum_steps must be ≥ 1")
    if cfg.data.epochs <= 0 and not cfg.train.max_steps:
        raise ValueError("data.epochs must be > 0 (or set train.max_steps)")
    if cfg.train.max_nonfinite < 1:
        raise ValueError("train.max_nonfinite must be ≥ 1")
    if cfg.data.transform not in TRANSFORMS:
        raise ValueError(f"data.transform must be crop_flip, origin_clip or timm, got {cfg.data.transform!r}")
    if cfg.data.num_classes is not None and cfg.data.num_classes < 1:
        raise ValueError("data.num_classes must be ≥ 1 (or null: taken from the labels)")
    if cfg.eval.every < 0:
        raise ValueError("eval.every must be ≥ 0 epochs (0: off)")
    if len(cfg.data.crop_scale) != 2 or len(cfg.data.crop_ratio) != 2:
        raise ValueError("data.crop_scale and data.crop_ratio take two numbers [lo, hi]")
    decode_policy(cfg)  # a bad data.background / data.max_image_pixels fails here, in one line


def decode_policy(cfg: Config):
    """The image decode policy of ``data.background`` and ``data.max_image_pixels``."""
    from ..data.decode import DecodePolicy

    try:
        return DecodePolicy.from_settings(cfg.data.background, cfg.data.max_image_pixels)
    except ValueError as exn:
        raise ValueError(f"data.background / data.max_image_pixels: {exn}") from None


def feature_sample_dim(cfg: HeadConfig, embed_dim: int) -> Optional[int]:
    """The head's d′: ``feature_sample_dim`` if set, else ``round(rate·D)``; None means all D."""
    if cfg.feature_sample_dim:
        d = cfg.feature_sample_dim
    elif cfg.feature_sample_rate is not None and cfg.feature_sample_rate < 1.0:
        d = max(1, int(round(cfg.feature_sample_rate * embed_dim)))
    else:
        return None
    if d > embed_dim:
        raise ValueError(f"head.feature_sample_dim {d} exceeds the embedding dim {embed_dim}")
    return None if d == embed_dim else d


def diff_configs(a: Dict[str, Any], b: Dict[str, Any], prefix: str = "") -> List[str]:
    """Dotted keys whose values differ between two config dicts (for resume warnings)."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, key + ".")
        elif va != vb:
            out.append(f"{key}: {va!r} -> {vb!r}")
    return out
