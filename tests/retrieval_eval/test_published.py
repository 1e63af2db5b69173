"""``--compare official``: the published R@1 beside the measured one, for a released encoder
(zero-shot) and for the export of a ``make finetune`` run (supervised), over several benchmarks
in one call."""
from __future__ import annotations

import json
import shutil

import pytest

from retrieval_eval.cli import main
from retrieval_eval.published import (
    SOURCE,
    compare,
    comparison_basis,
    finetune_origin,
    format_comparison,
    published_r1,
)

from . import fake_trees as fake

CLI_FAST = ["--device", "cpu", "--workers", "0", "--no-progress"]


def finetune_run(tmp_path, tiny_export, dataset="sop", init_from="ViT-B/32"):
    """A run folder as `make finetune` leaves it: RUN/config.yaml (the resolved config) and RUN/export/."""
    from unicom.train.config import Config

    run = tmp_path / "runs" / "finetune" / dataset
    shutil.copytree(tiny_export, run / "export")
    cfg = Config()
    cfg.model.init_from = init_from
    cfg.run.dataset = dataset
    (run / "config.yaml").write_text(cfg.to_yaml())
    return run


def test_released_names_read_the_zero_shot_table():
    assert comparison_basis("ViT-B/32") == {"setting": "zero-shot", "model": "ViT-B/32"}
    assert comparison_basis("vit-l-14@336px")["model"] == "ViT-L/14@336px"
    assert published_r1("ViT-L/14", "inshop") == 83.6 and published_r1("ViT-B/16", "cub200") == 86.5
    assert published_r1("ViT-B/32", "digits") is None
    row = compare({"benchmark": "cub", "metrics": {"R@1": 0.8}}, comparison_basis("ViT-B/32"))
    assert row["published_R@1"] == 83.7 and row["measured_R@1"] == 80.0 and row["difference"] == pytest.approx(-3.7)
    assert row["source"] == SOURCE
    table = format_comparison([row])
    assert "83.7" in table and "-3.70" in table and "unicom/README.md" in table


def test_a_finetune_export_is_recognised_from_its_run_folder(tmp_path, tiny_export):
    run = finetune_run(tmp_path, tiny_export, "inshop", "ViT-L/14")
    origin = finetune_origin(str(run / "export"))
    assert origin == {"model": "ViT-L/14", "dataset": "inshop", "run": str(run)}
    assert finetune_origin(str(run)) == origin  # the run folder itself
    basis = comparison_basis(str(run / "export"))
    assert basis["setting"] == "supervised"
    assert compare({"benchmark": "inshop", "metrics": {"R@1": 0.9}}, basis)["published_R@1"] == 96.0
    # another benchmark than the one it was fine-tuned on has no published supervised figure
    assert compare({"benchmark": "sop", "metrics": {"R@1": 0.9}}, basis)["published_R@1"] is None
    # a run trained on pseudo-labelled shards is no fine-tuning of a released encoder
    shards = finetune_run(tmp_path / "other", tiny_export, "shards", "ViT-B/32")
    assert finetune_origin(str(shards / "export")) is None
    assert finetune_origin(str(tiny_export)) is None


def test_several_benchmarks_in_one_call_with_the_supervised_column(tmp_path, tiny_export, capsys):
    fake.sop(tmp_path / "data")
    fake.cub(tmp_path / "data")
    run = finetune_run(tmp_path, tiny_export, "sop", "ViT-B/32")
    out = tmp_path / "eval"
    rc = main(["--benchmark", "sop", "cub", "--data-root", str(tmp_path / "data"), "--model", str(run / "export"),
               "--compare", "official", "--output", str(out), *CLI_FAST])
    assert rc == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["benchmark"] for r in rows] == ["sop", "cub"]
    sop = json.loads((out / "sop" / "results.json").read_text())
    measured = round(100 * sop["metrics"]["R@1"], 2)
    assert rows[0] == sop["published"]
    assert rows[0]["setting"] == "supervised" and rows[0]["published_R@1"] == 87.1
    assert rows[0]["measured_R@1"] == measured and rows[0]["difference"] == pytest.approx(measured - 87.1)
    assert rows[1]["published_R@1"] is None and rows[1]["difference"] is None
    assert (out / "cub" / "results.json").is_file()
    assert "87.1" in printed and "published: deepglint/unicom" in printed


def test_compare_refuses_an_encoder_without_published_figures(tmp_path, tiny_export, capsys):
    fake.sop(tmp_path)
    for argv in (["--model", str(tiny_export)], ["--clip-model", "TinyCLIP-demo", "--clip-pretrained", "none"]):
        rc = main(["--benchmark", "sop", "--data-root", str(tmp_path), *argv, "--compare", "official",
                   "--output", str(tmp_path / "out"), *CLI_FAST])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err
        assert "is neither a released encoder (ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px)" in err
    assert not (tmp_path / "out").exists()


def test_several_benchmarks_need_one_root_or_one_each(tmp_path, tiny_export, capsys):
    rc = main(["--benchmark", "sop", "cub", "cars", "--data-root", "a", "b", "--model", str(tiny_export), *CLI_FAST])
    assert rc == 2 and "one per benchmark (3), got 2" in capsys.readouterr().err
