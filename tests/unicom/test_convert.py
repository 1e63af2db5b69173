"""One typed conversion for flags and config values: the same text means the same value (or the
same error) given as a generated flag or as a trainer override."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import pytest

from unicom.cli.convert import ConversionError, convert, is_supported
from unicom.cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace, option
from unicom.train.config import load_config


@dataclass
class Flags:
    batch_size: int = option(128, "images per step")
    lr: float = option(1e-3, "learning rate")
    name: Optional[str] = option(None, "a name")
    max_steps: Optional[int] = option(None, "a cap")


def _parse(*argv: str) -> Flags:
    p = argparse.ArgumentParser(prog="prog")
    add_dataclass_arguments(p, Flags)
    return dataclass_from_namespace(Flags, p.parse_args(list(argv)))


@pytest.mark.parametrize("text, hint, expected", [
    ("12", int, 12), ("1e3", int, 1000), (" 7 ", int, 7), (12.0, int, 12), ("1e-3", float, 0.001), (3, float, 3.0),
    ("x", str, "x"), (None, Optional[int], None), ("5", Optional[int], 5), ([1, "2"], List[float], [1.0, 2.0]),
    ("true", bool, True), ("off", bool, False), (1, bool, True), ({"a": 1}, Dict[str, Any], {"a": 1}),
    (object, Any, object),
])
def test_convert_accepts(text, hint, expected):
    out = convert(text, hint, "x")
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("value, hint, expected", [
    ("2.5", int, "an integer"), (True, int, "an integer"), ("fast", float, "a number"), (False, float, "a number"),
    ("maybe", bool, "true or false"), (3, str, "a string"), (0.9, List[float], "a list"), ([1], float, "a number"),
    ("a", Dict[str, Any], "a mapping"),
])
def test_convert_refuses_with_the_name_and_the_type(value, hint, expected):
    with pytest.raises(ConversionError) as err:
        convert(value, hint, "config key s.k")
    assert str(err.value) == f"config key s.k expects {expected}, got {value!r}"
    assert is_supported(hint)


def test_a_flag_and_an_override_convert_alike(capsys):
    # the same text, as a generated flag and as a trainer override, gives the same typed value
    flags = _parse("--batch-size", "1e3", "--lr", "5e-4", "--max-steps", "20")
    cfg = load_config(None, ["data.batch_size=1e3", "optim.lr=5e-4", "train.max_steps=20"])
    assert (flags.batch_size, flags.lr, flags.max_steps) == (cfg.data.batch_size, cfg.optim.lr, cfg.train.max_steps)
    assert type(flags.batch_size) is type(cfg.data.batch_size) is int
    # and the same refusal: a flag's is argparse's usage error, an override's a one-line ValueError
    with pytest.raises(SystemExit):
        _parse("--batch-size", "2.5")
    assert "argument --batch-size: expects an integer, got '2.5'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"config key data.batch_size expects an integer, got 2.5"):
        load_config(None, ["data.batch_size=2.5"])


def test_every_command_builds_its_flags_from_a_dataclass():
    # each command's parser: every option it has comes from a dataclass field (dest = field name)
    import dataclasses

    from clustering.cli import ClusterIO, ClusterRun
    from clustering.cli import build_parser as cluster_parser
    from clustering.config import ClusterConfig, ExtractConfig
    from retrieval_eval.cli import build_parser as eval_parser
    from retrieval_eval.options import EvalInputs, EvalOptions
    from unicom.demo.clip_pretrain import ClipPretrainArgs
    from unicom.demo.clip_pretrain import build_parser as clip_parser
    from unicom.sample_data.cli import SampleArgs
    from unicom.sample_data.cli import build_parser as sample_parser
    from unicom.train.cli import TrainArgs
    from unicom.train.cli import build_parser as train_parser

    commands = {"unicom-cluster": (cluster_parser, (ClusterIO, ClusterRun, ClusterConfig, ExtractConfig)),
                "unicom-eval": (eval_parser, (EvalInputs, EvalOptions)),
                "unicom-train": (train_parser, (TrainArgs,)), "unicom-sample": (sample_parser, (SampleArgs,)),
                "clip_pretrain": (clip_parser, (ClipPretrainArgs,))}
    for name, (build, classes) in commands.items():
        fields = {f.name for c in classes for f in dataclasses.fields(c)}
        dests = {a.dest for a in build()._actions if a.dest != "help"}
        assert dests <= fields, (name, sorted(dests - fields))
