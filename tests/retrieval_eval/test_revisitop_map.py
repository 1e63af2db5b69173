"""Revisited Oxford/Paris mAP on a hand-built case with junk and hard images."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval_eval.loaders.base import GLDV2, GLDV2_MISSING, REVISITOP, Benchmark, ImageSet
from retrieval_eval.metrics import revisitop_average_precision, revisitop_map, split_ground_truth
from retrieval_eval.scoring import score_revisitop

from . import reference as ref

# Gallery of 10; the query's positives: easy {0, 3}, hard {5}; junk {1}.
RANKING = np.array([1, 0, 2, 5, 3, 4, 6, 7, 8, 9])
GT = {"easy": np.array([0, 3]), "hard": np.array([5]), "junk": np.array([1])}


def test_hand_case_each_protocol():
    # Easy: junk 1 and hard 5 leave the ranking → [0, 2, 3, …]: positives at ranks 0 and 2.
    #   AP = [ (1 + 1)/2 + (1/2 + 2/3)/2 ] / 2
    # Medium: junk 1 leaves → [0, 2, 5, 3, …]: positives at 0, 2, 3.
    #   AP = [ 1 + (1/2 + 2/3)/2 + (2/3 + 3/4)/2 ] / 3
    # Hard: junk 1, easy 0 and 3 leave → [2, 5, …]: the positive at rank 1.
    #   AP = (0/1 + 1/2)/2 / 1
    want = {"easy": (1 + (1 / 2 + 2 / 3) / 2) / 2,
            "medium": (1 + (1 / 2 + 2 / 3) / 2 + (2 / 3 + 3 / 4) / 2) / 3,
            "hard": 0.25}
    for protocol, value in want.items():
        pos, ign = split_ground_truth(GT, protocol)
        assert revisitop_average_precision(RANKING, pos, ign) == pytest.approx(value)
        assert ref.revisitop_ap_official_style(RANKING, pos, ign) == pytest.approx(value)


def test_map_and_precision_at_k_with_a_query_without_hard_positives():
    gt2 = {"easy": np.array([9]), "hard": np.array([], np.int64), "junk": np.array([2])}
    out = revisitop_map(np.stack([RANKING, RANKING]), [GT, gt2], kappas=(1, 5, 10))
    # query 2: easy 9 ranks last of 9 non-junk items (0-based 8): AP = (0 + 1/9)/2
    ap2 = (0 + 1 / 9) / 2
    assert out["easy"]["mAP"] == pytest.approx(((1 + (1 / 2 + 2 / 3) / 2) / 2 + ap2) / 2)
    assert out["hard"]["mAP"] == pytest.approx(0.25)          # query 2 has no hard positive: left out
    assert out["hard"]["queries"] == 1 and out["easy"]["queries"] == 2
    # medium mP@k, query 1: positives at 1-based ranks [1, 3, 4] → mP@1 = 1, mP@5 = 3/4 (k' = 4)
    # query 2 (medium = easy): positive at 9 → mP@1 = 0, mP@5 = 0, mP@10: k' = 9 → 1/9
    assert out["medium"]["mP@1"] == pytest.approx(0.5)
    assert out["medium"]["mP@5"] == pytest.approx(0.375)
    assert out["medium"]["mP@10"] == pytest.approx((0.75 + 1 / 9) / 2)


def test_random_rankings_against_the_official_style_reference():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = 40
        ids = rng.permutation(n)
        easy, hard, junk = ids[:5], ids[5:9], ids[9:13]
        ranking = rng.permutation(n)
        entry = {"easy": easy, "hard": hard, "junk": junk}
        for protocol in ("easy", "medium", "hard"):
            pos, ign = split_ground_truth(entry, protocol)
            assert revisitop_average_precision(ranking, pos, ign) == pytest.approx(
                ref.revisitop_ap_official_style(ranking, pos, ign))


def test_scoring_ranks_the_whole_gallery():
    # Gallery on the unit circle; the query sits at angle 0, so rank order = angular distance.
    angles = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    gallery = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    query = np.array([[1.0, 0.0]], np.float32)
    gt = [{"easy": np.array([1, 4]), "hard": np.array([6]), "junk": np.array([0])}]
    bench = Benchmark("toy", REVISITOP, ImageSet([None]), ImageSet([None] * 10), ground_truth=gt)
    m = score_revisitop(bench, query, gallery, device="cpu").metrics
    # ranking 0..9; medium: junk 0 out → [1..9], positives 1, 4, 6 at ranks 0, 3, 5
    want = (1 + (1 / 3 + 2 / 4) / 2 + (2 / 5 + 3 / 6) / 2) / 3
    assert m["mAP_M"] == pytest.approx(want)
    assert m["queries_E"] == m["queries_M"] == m["queries_H"] == 1


def test_dropping_a_gallery_image_renumbers_the_ground_truth():
    gt = [{"easy": np.array([0, 3]), "hard": np.array([5]), "junk": np.array([1])}]
    bench = Benchmark("toy", REVISITOP, ImageSet(["q.jpg"]), ImageSet([f"{i}.jpg" for i in range(6)]), ground_truth=gt)
    keep = np.array([True, True, True, False, True, True])   # image 3 unreadable
    sub = bench.subset(np.array([True]), keep)
    assert len(sub.gallery) == 5
    assert sub.ground_truth[0]["easy"].tolist() == [0]
    assert sub.ground_truth[0]["hard"].tolist() == [4]
    assert sub.ground_truth[0]["junk"].tolist() == [1]


def test_subset_keeps_the_kept_queries_rows_of_per_query_info():
    gt = [np.array([0]), np.array([1]), np.array([0, 1])]
    bench = Benchmark("toy", GLDV2, ImageSet(["a", "b", "c"]), ImageSet(["x", "y"]), ground_truth=gt,
                      info={GLDV2_MISSING: np.array([3, 0, 5]), "root": "r"})
    sub = bench.subset(np.array([True, False, True]))
    assert sub.info[GLDV2_MISSING].tolist() == [3, 5]
    assert sub.info["root"] == "r"
    assert bench.info[GLDV2_MISSING].tolist() == [3, 0, 5]
