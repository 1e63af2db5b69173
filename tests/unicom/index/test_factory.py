import numpy as np
import pytest

from unicom.index.factory import factory_string, make_index, min_training_points


@pytest.mark.parametrize("spec,factory", [("flat", "Flat"), ("HNSW", "HNSW32"), ("IVF256,PQ16", "IVF256,PQ16")])
def test_short_names_and_factory_strings(spec, factory):
    assert factory_string(spec, n=10_000) == factory
    index, got = make_index(spec, 64, n=10_000)
    assert got == factory and index.d == 64


def test_ivf_short_name_sizes_cells_by_collection():
    assert factory_string("ivf", n=10_000) == "IVF256,Flat"  # ≈ 4·√n cells, ≥ 39 points each


@pytest.mark.parametrize("spec", ["Bogus", "IVF64,PQ7"])
def test_bad_spec_is_one_line_naming_it(spec):
    with pytest.raises(ValueError, match=rf"--index-type '{spec}' is not a faiss index_factory string") as e:
        make_index(spec, 64)
    assert "\n" not in str(e.value)


def test_training_needs_and_inner_product_search():
    index, _ = make_index("IVF16,Flat", 32)
    assert min_training_points(index) == 16 * 39
    x = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index.train(x)
    index.add(x)
    index.nprobe = 16  # every cell: exact
    _, ids = index.search(x[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("spec,need", [("OPQ8,IVF2,Flat", 256), ("OPQ16,PQ16", 256), ("PCA32,PQ8", 256),
                                       ("IVF16,PQ16x4", 16 * 39)])
def test_training_needs_count_rotations_and_pq_behind_a_transform(spec, need):
    index, _ = make_index(spec, 64)
    assert min_training_points(index) == need
