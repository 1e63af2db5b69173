"""The decode policy's settings: ``--background`` / ``--max-image-pixels`` on every command (a
bad value is a one-line error before any work), and the policy's record in features, index and
export, with features of another policy refused when mixed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.retrieval_eval import fake_trees as fake
from unicom.data.decode import DecodePolicy, using_policy

from . import real_images as ri

ROOT = Path(__file__).resolve().parents[3]


def test_embed_and_train_refuse_a_bad_colour_in_one_line(tmp_path, capsys):
    from unicom.embed.cli import main as embed_main
    from unicom.train.cli import main as train_main

    assert embed_main(["--model", "ViT-B/32", "--data", str(tmp_path), "--output", str(tmp_path / "o"),
                       "--background", "blurple"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--background" in err and "blurple" in err
    assert train_main(["--dataset", "csv", "--data-root", str(tmp_path), "--output", str(tmp_path / "r"),
                       "--background", "1,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.background" in err


def test_eval_and_cluster_settings_build_the_policy():
    from clustering.config import ExtractConfig
    from clustering.extract import decode_policy
    from retrieval_eval.options import EvalOptions

    assert EvalOptions(background="black").decode_policy().background == (0, 0, 0)
    with pytest.raises(ValueError, match="--background"):
        EvalOptions(background="blurple")
    assert decode_policy(ExtractConfig(background="#ff0000", max_image_pixels=0)) == DecodePolicy((255, 0, 0), 0)


def test_train_records_its_background_in_the_export(tmp_path):
    from tests.unicom.train import fake_train_trees as trees
    from unicom.train.cli import main as train_main

    csv = trees.csv_list(tmp_path / "csv", classes=2)
    out = tmp_path / "run"
    assert train_main(["--config", str(ROOT / "configs" / "finetune" / "tiny.yaml"), "--dataset", "csv",
                       "--data-root", str(csv), "--output", str(out), "--background", "#000000",
                       "train.max_steps=1", "data.batch_size=4", "eval.every=0"]) == 0
    record = {"version": 1, "background": "#000000"}
    assert json.loads((out / "export" / "config.json").read_text())["decode"] == record
    step = next((out / "checkpoints").glob("step_*"))
    assert json.loads((step / "encoder.json").read_text())["decode"] == record


def test_features_of_another_policy_are_not_mixed(tmp_path):
    from unicom.embed import embed_to_features

    folder = tmp_path / "images"
    fake.jpeg(folder / "a.jpg", 1)
    enc = ri.pool_encoder()
    embed_to_features(enc, str(folder), tmp_path / "out", workers=0, progress=False)
    fake.jpeg(folder / "b.jpg", 2)
    with using_policy(DecodePolicy(background=(0, 0, 0))), pytest.raises(ValueError, match="decoded differently"):
        embed_to_features(enc, str(folder), tmp_path / "out", workers=0, progress=False, name="more")
    res = embed_to_features(enc, str(folder), tmp_path / "out", workers=0, progress=False, name="more")
    assert res.written == {"more": 2}


def test_search_decodes_queries_under_the_index_policy(tmp_path):
    from unicom.embed import embed_to_features
    from unicom.embed.index import build_index_dir
    from unicom.embed.search import Searcher

    rgba, mask = ri.cutout("stripes")
    folder = tmp_path / "images"
    folder.mkdir()
    ri.save(rgba, folder / "cutout.png", "PNG")
    enc = ri.pool_encoder()
    with using_policy(DecodePolicy(background=(0, 0, 0))):
        res = embed_to_features(enc, str(folder), tmp_path / "out", workers=0, progress=False)
    index = build_index_dir(res.features_dir, tmp_path / "out" / "index", "flat")
    searcher = Searcher(index, model=enc, progress=False)
    assert searcher.policy.background == (0, 0, 0)
    hits = searcher.search_images([folder / "cutout.png"], k=1)[0]
    assert hits[0].score > 0.9999                       # the query decodes exactly like the collection
    assert (np.asarray(searcher.open_image(hits[0]))[mask == 0] == 0).all()
    with pytest.raises(ValueError, match="decoded with background #000000"):
        Searcher(index, model=enc, background="white")
