"""One dataset registry: each benchmark or layout declared once (name, aliases, ks, split), and
both ``unicom-train --dataset`` and ``unicom-eval --benchmark`` read it."""
from __future__ import annotations

import pytest

from retrieval_eval.loaders import available_benchmarks, load_benchmark
from retrieval_eval.loaders.registry import LOADERS, READERS
from tests.retrieval_eval import fake_trees as trees
from unicom.datasets import LABELLED_LAYOUTS, DatasetNotFoundError, read_train_split
from unicom.datasets.registry import DATASETS, SPECS, benchmark_names, canonical_name, dataset_spec, training_datasets
from unicom.train.eval_hook import headline_metric

MAKERS = {"cub": trees.cub, "cars": trees.cars, "sop": trees.sop, "inshop": trees.inshop,
          "inaturalist": trees.inaturalist, "gldv2": trees.gldv2, "image_folder": trees.image_folder}


def test_each_name_is_declared_once_and_served_by_one_loader_and_one_reader():
    names = [s.name for s in SPECS]
    aliases = [a for s in SPECS for a in s.aliases]
    assert len(set(names)) == len(names) and len(set(aliases)) == len(aliases)
    assert not set(names) & set(aliases)
    assert list(LOADERS) == benchmark_names() == available_benchmarks() == names
    assert set(LABELLED_LAYOUTS) == set(training_datasets())
    assert set(READERS) <= set(training_datasets())  # the layouts both commands read with the same code


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_aliases_mean_the_same_thing_to_both_commands(spec):
    for alias in spec.aliases + (spec.name.upper(), f" {spec.name} "):
        assert canonical_name(alias) == spec.name and dataset_spec(alias) is DATASETS[spec.name]
        assert headline_metric(alias) == spec.headline
    assert canonical_name("no-such-set") == "no-such-set" and dataset_spec("no-such-set") is None


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_the_declared_ks_split_and_aliases_reach_the_loaded_benchmark(name, tmp_path):
    spec = DATASETS[name]
    root = MAKERS[name](tmp_path)
    for key in (name,) + spec.aliases:
        bench = load_benchmark(key, root)
        assert (bench.name, bench.ks) == (name, spec.ks)
        if name in READERS:
            assert bench.all_vs_all == (not spec.query_gallery)
        if spec.eval_split:
            assert bench.info["split"] == spec.eval_split
    for key in (name,) + spec.aliases:  # the trainer takes the same names (the train split, where the tree has one)
        try:
            assert len(read_train_split(key, root)) > 0
        except DatasetNotFoundError as exc:  # the name was accepted: the layout's train file is what is missing
            assert str(exc).startswith(f"{name}: expected file not found")


def test_a_name_only_the_evaluation_knows_is_refused_by_the_trainer(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'roxford'; available: cub, cars, sop"):
        read_train_split("roxford", tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark 'imagenet'; available: cub, cars, sop"):
        load_benchmark("imagenet", tmp_path)
