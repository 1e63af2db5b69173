"""Flags generated from a dataclass: types from the annotations, renamed flags, skip, overrides."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import List, Optional

import pytest

from unicom.cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace, option


@dataclass
class Opts:
    k: int = option(10, "clusters", flag="--num-clusters", aliases=("--k",))
    rate: float = option(0.5, "a rate")
    name: Optional[str] = option(None, "a name")
    size: Optional[int] = option(None, "a size")
    fast: bool = option(False, "go fast")
    mode: str = option("a", "a mode", choices=("a", "b"))
    ks: Optional[List[int]] = option(None, "a list", type=int, nargs="+", group="lists")
    progress: bool = True  # not a flag


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prog")
    add_dataclass_arguments(p, Opts, **kw)
    return p


def test_types_come_from_the_annotations_and_defaults_from_the_fields():
    o = dataclass_from_namespace(Opts, _parser().parse_args([]))
    assert o == Opts()
    o = dataclass_from_namespace(Opts, _parser().parse_args(["--num-clusters", "7", "--rate", "2", "--name", "x",
                                                             "--size", "3", "--fast", "--mode", "b", "--ks", "1", "2"]))
    assert (o.k, o.rate, o.name, o.size, o.fast, o.mode, o.ks) == (7, 2.0, "x", 3, True, "b", [1, 2])
    assert isinstance(o.k, int) and isinstance(o.rate, float)
    assert "--progress" not in _parser().format_help()


def test_an_old_name_works_and_warns(capsys):
    assert _parser().parse_args(["--k", "3"]).k == 3
    assert "prog: warning: --k is deprecated, use --num-clusters" in capsys.readouterr().err


def test_skip_and_overrides():
    p = _parser(skip=("rate",))
    assert "--rate" not in p.format_help()
    o = dataclass_from_namespace(Opts, p.parse_args([]), rate=9.0, progress=False)
    assert o.rate == 9.0 and o.progress is False


def test_an_annotation_without_a_type_is_refused():
    @dataclass
    class Bad:
        xs: List[int] = option(None, "no type given")

    with pytest.raises(TypeError, match="--xs: give type="):
        add_dataclass_arguments(argparse.ArgumentParser(), Bad)
