"""Every loader reads a tiny fake tree in its official layout; a missing file names itself and
where the benchmark is obtained."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval_eval.loaders import DatasetNotFoundError, available_benchmarks, load_benchmark

from . import fake_trees as fake


def _exists(paths):
    import os

    return all(os.path.isfile(p) for p in paths)


def test_cub_test_split_is_classes_101_to_200(tmp_path):
    fake.cub(tmp_path)
    for root in (tmp_path, tmp_path / "CUB_200_2011"):
        b = load_benchmark("cub", root)
        assert b.all_vs_all and b.ks == (1, 2, 4, 8)
        assert sorted(set(b.queries.labels.tolist())) == [101, 150, 200]
        assert len(b.queries) == 9 and _exists(b.queries.items)


def test_cars_test_split_is_classes_99_to_196(tmp_path):
    fake.cars(tmp_path)
    b = load_benchmark("cars", tmp_path)
    assert sorted(set(b.queries.labels.tolist())) == [99, 150, 196]
    assert len(b.queries) == 6 and _exists(b.queries.items)


def test_sop_reads_ebay_test(tmp_path):
    fake.sop(tmp_path)
    b = load_benchmark("sop", tmp_path)
    assert b.ks == (1, 10, 100, 1000)
    assert b.queries.labels.tolist() == [11319, 11319, 11320, 11320, 11321]
    assert _exists(b.queries.items)


def test_inshop_queries_search_the_gallery(tmp_path):
    fake.inshop(tmp_path)
    b = load_benchmark("inshop", tmp_path)
    assert not b.all_vs_all and b.ks == (1, 10, 20, 30)
    assert len(b.queries) == 2 and len(b.gallery) == 3
    # labels shared between query and gallery (item ids), training rows ignored
    assert b.queries.labels.tolist() == [0, 1] and b.gallery.labels.tolist() == [0, 1, 1]
    assert _exists(b.queries.items + b.gallery.items)


def test_inaturalist_labels_are_category_folders(tmp_path):
    fake.inaturalist(tmp_path)
    b = load_benchmark("inaturalist", tmp_path)
    assert b.queries.labels.tolist() == [5601, 5601, 2300, 2300, 2301]
    assert b.ks == (1, 4, 16, 32) and _exists(b.queries.items)


@pytest.mark.parametrize("fmt", ["pkl", "mat"])
@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_revisitop_reads_ground_truth_and_boxes(tmp_path, name, fmt):
    fake.revisitop(tmp_path, name, fmt)
    b = load_benchmark(name, tmp_path)
    assert len(b.queries) == 2 and len(b.gallery) == 6
    assert b.queries.boxes[0] == (2.0, 3.0, 20.0, 18.0)
    g0, g1 = b.ground_truth
    assert g0["easy"].tolist() == [0, 3] and g0["hard"].tolist() == [5] and g0["junk"].tolist() == [1]
    assert g1["easy"].tolist() == [2] and g1["hard"].tolist() == [] and g1["junk"].tolist() == [4]
    assert _exists(b.queries.items + b.gallery.items)


def test_gldv2_private_public_and_ignored(tmp_path):
    fake.gldv2(tmp_path)
    b = load_benchmark("gldv2", tmp_path)
    assert len(b.queries) == 2 and len(b.gallery) == 4  # the Ignored row is no query
    assert b.query_groups.tolist() == ["private", "public"]
    assert [g.tolist() for g in b.ground_truth] == [[0, 2], [3]]
    assert _exists(b.queries.items + b.gallery.items)


@pytest.mark.parametrize("split", [False, True])
def test_image_folder(tmp_path, split):
    fake.image_folder(tmp_path, split)
    b = load_benchmark("image_folder", tmp_path)
    assert b.all_vs_all is (not split)
    if split:
        assert len(b.queries) == 6 and len(b.gallery) == 9
        assert set(b.queries.labels.tolist()) == set(b.gallery.labels.tolist()) == {0, 1, 2}
    else:
        assert len(b.queries) == 6  # the hidden ._junk.jpg is not an image
    assert _exists(b.queries.items)


def test_csv_list(tmp_path):
    fake.jpeg(tmp_path / "a.jpg", 0)
    fake.jpeg(tmp_path / "b.jpg", 1)
    (tmp_path / "list.csv").write_text("path,label,split\na.jpg,red,query\nb.jpg,red,gallery\n"
                                       f"{tmp_path / 'a.jpg'},blue,gallery\nc.jpg,x,train\n")
    b = load_benchmark("csv", tmp_path / "list.csv")
    assert len(b.queries) == 1 and len(b.gallery) == 2
    assert b.queries.items[0] == str(tmp_path / "a.jpg")
    assert b.queries.labels.tolist() == [1] and b.gallery.labels.tolist() == [1, 0]
    (tmp_path / "all.csv").write_text("a.jpg,1,test\nb.jpg,1\n")
    assert load_benchmark("csv", tmp_path / "all.csv").all_vs_all
    (tmp_path / "bad.csv").write_text("a.jpg,1,test\nb.jpg,1,query\n")
    with pytest.raises(ValueError, match="mixes"):
        load_benchmark("csv", tmp_path / "bad.csv")


def test_sample_reads_heldout_concepts(sample_set):
    root, manifest = sample_set
    b = load_benchmark("sample", root)
    assert b.all_vs_all
    assert len(np.unique(b.queries.labels)) == len(manifest["heldout_concepts"])
    assert len(b.queries) == sum(manifest["heldout_counts"].values())


def test_digits_offline():
    b = load_benchmark("digits")
    assert len(b.queries) == 1797 and len(np.unique(b.queries.labels)) == 10
    assert b.queries.items[0].mode == "RGB"


OFFICIAL = {"cub": ("images.txt", "caltech.edu"), "cars": ("cars_annos.mat", "stanford.edu"),
            "sop": ("Ebay_test.txt", "lifted_struct"), "inshop": ("list_eval_partition.txt", "DeepFashion"),
            "inaturalist": ("Inaturalist_test_set1.txt", "inat_comp"),
            "roxford5k": ("gnd_roxford5k.pkl", "revisitop"), "rparis6k": ("gnd_rparis6k.pkl", "revisitop"),
            "gldv2": ("retrieval_solution_v2.1.csv", "google-landmark"),
            "sample": ("heldout", "make sample"), "image_folder": ("nowhere", "your own images"),
            "csv": ("list.csv", "CSV")}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_missing_files_name_the_file_and_the_source(tmp_path, name):
    root = tmp_path / "nowhere" if name == "image_folder" else tmp_path
    with pytest.raises(DatasetNotFoundError) as err:
        load_benchmark(name, root)
    expected_file, source = OFFICIAL[name]
    assert expected_file in str(err.value) and source in str(err.value)


def test_gldv2_missing_index_csv(tmp_path):
    fake.gldv2(tmp_path)
    (tmp_path / "index.csv").unlink()
    with pytest.raises(DatasetNotFoundError, match="index.csv"):
        load_benchmark("gldv2", tmp_path)


def test_registry_lists_every_benchmark():
    assert set(OFFICIAL) | {"digits"} == set(available_benchmarks())
    with pytest.raises(ValueError, match="available"):
        load_benchmark("nope", ".")
