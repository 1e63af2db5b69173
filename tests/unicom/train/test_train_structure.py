"""Typed config values, the run's hook points, the throughput plot and a fast ``--help``."""
import subprocess
import sys

import pytest

from tests.unicom.train.support import tiny_config
from unicom.train.config import load_config


def test_values_take_their_fields_type_when_the_config_is_loaded(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  betas: [0.9, 1]\nhead:\n  scale: 16\n  m2: 0\ntrain:\n  max_steps: 1e3\n")
    cfg = load_config(path, ["head.feature_sample_rate=1", "schedule.warmup_steps=null"])
    assert cfg.optim.lr == 1e-3 and type(cfg.optim.lr) is float           # YAML reads "1e-3" as a string
    assert cfg.optim.betas == [0.9, 1.0] and all(type(b) is float for b in cfg.optim.betas)
    assert type(cfg.head.scale) is float and type(cfg.head.m2) is float  # Optional[float]
    assert cfg.train.max_steps == 1000 and type(cfg.train.max_steps) is int
    assert type(cfg.head.feature_sample_rate) is float and cfg.schedule.warmup_steps is None


@pytest.mark.parametrize("override,words", [
    ("optim.lr=fast", "optim.lr expects a number, got 'fast'"),
    ("train.max_steps=2.5", "train.max_steps expects an integer, got 2.5"),
    ("train.progress=maybe", "train.progress expects true or false"),
    ("optim.betas=0.9", "optim.betas expects a list"),
    ("head.m1=[1]", "head.m1 expects a number"),
    ("model.type=3", "model.type expects a string"),
])
def test_a_value_of_the_wrong_type_is_a_one_line_error_naming_key_and_type(override, words):
    with pytest.raises(ValueError) as info:
        load_config(None, [override])
    assert words in str(info.value) and len(str(info.value).splitlines()) == 1


def test_the_sample_rate_default_and_rule_are_the_heads():
    from unicom.losses.defaults import DEFAULT_SAMPLE_RATE
    from unicom.losses.partial_fc import PartialFC

    assert load_config(None).head.sample_rate == DEFAULT_SAMPLE_RATE
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"head.sample_rate must lie in \(0, 1\]"):
            load_config(None, [f"head.sample_rate={bad}"])
        with pytest.raises(ValueError, match=r"sample_rate must lie in \(0, 1\]"):
            PartialFC(8, 4, sample_rate=bad, world_size=1, rank=0)


def test_hooks_are_called_at_run_start_epoch_ends_and_checkpoints(toy_labels, tmp_path):
    from unicom.train.loop import RunHooks, train

    calls = []

    class Record(RunHooks):
        def on_run_start(self, parts, start):
            calls.append(("start", start.state.step))

        def on_epoch_end(self, parts, state, epoch):
            calls.append(("epoch", state.step, epoch))

        def on_checkpoint(self, parts, state, path):
            calls.append(("checkpoint", state.step, path.name))

    shards, labels = toy_labels
    cfg = tiny_config("train.max_steps=5", "train.ckpt_every=2", "data.samples_per_epoch=32")  # 2 steps of 16
    train(cfg, str(shards), str(labels), str(tmp_path / "run"), hooks=Record())
    assert calls == [("start", 0), ("epoch", 2, 1), ("checkpoint", 2, "step_2"), ("epoch", 4, 2),
                     ("checkpoint", 4, "step_4"), ("checkpoint", 5, "step_5")]


def test_the_plot_shows_the_throughput_beside_the_loss(tmp_path):
    from PIL import Image

    from unicom.train.run_log import RunLogger, plot_loss

    logger = RunLogger(tmp_path, True, 3, progress=False)
    for step in (1, 2, 3):
        logger.log({"step": step, "loss": 10.0 - step, "loss_avg": 10.0 - step, "lr": 1e-3,
                    "images_per_s": 100.0 * step})
    logger.close()
    with Image.open(plot_loss(tmp_path)) as im:
        assert im.width > 2 * im.height  # two panels side by side


def test_help_imports_no_torch_and_is_fast():
    code = ("import sys, time; t = time.perf_counter(); from unicom.train.cli import build_parser; "
            "build_parser().format_help(); dt = time.perf_counter() - t; "
            "print(sorted(m for m in ('torch', 'torchvision', 'numpy', 'PIL') if m in sys.modules), dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "[]", out
    assert float(out[1]) < 1.0, out
