from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from clustering.quality import agreement, label_codes, pairs_from_labels
from clustering.report import build_report, format_table, plot_histogram, size_stats


def _reference(pairs):
    """The earlier hand-made purity and NMI (dense float64 contingency table), kept here as the
    independent reference that the scikit-learn version must reproduce to float precision."""
    clusters = sorted({c for c, _ in pairs})
    truths = sorted({t for _, t in pairs}, key=str)
    m = np.zeros((len(clusters), len(truths)), np.float64)
    for (c, t), n in pairs.items():
        m[clusters.index(c), truths.index(t)] += n
    n = m.sum()

    def entropy(counts):
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    hu, hv = entropy(m.sum(axis=1)), entropy(m.sum(axis=0))
    if hu == 0 and hv == 0:
        return float(m.max(axis=1).sum() / n), 1.0
    nz = m > 0
    pij = m[nz] / n
    pi = (m.sum(axis=1, keepdims=True) / n).repeat(m.shape[1], axis=1)[nz]
    pj = (m.sum(axis=0, keepdims=True) / n).repeat(m.shape[0], axis=0)[nz]
    mi = float((pij * (np.log(pij) - np.log(pi) - np.log(pj))).sum())
    denom = (hu + hv) / 2
    return float(m.max(axis=1).sum() / n), (max(0.0, mi) / denom if denom > 0 else 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_purity_and_nmi_equal_the_hand_made_reference(seed):
    # the demo's shape: 2,166 samples, K=48 clusters, 36 concepts, clusters correlated with truth
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 36, 2166)
    labels = np.where(rng.random(2166) < 0.6, truth % 48, rng.integers(0, 48, 2166))
    names = np.array([f"concept_{t:02d}" for t in truth])
    pairs = pairs_from_labels(labels, names)
    a = agreement(pairs)
    ref_purity, ref_nmi = _reference(pairs)
    assert a["purity"] == pytest.approx(ref_purity, rel=1e-12, abs=1e-15)
    assert a["nmi"] == pytest.approx(ref_nmi, rel=1e-12, abs=1e-15)
    assert a["nmi"] == pytest.approx(normalized_mutual_info_score(names, labels), rel=1e-12)
    assert (a["samples_with_truth"], a["clusters_with_truth"]) == (2166, len(set(labels.tolist())))
    assert a["truth_classes"] == 36


def test_counts_mapping_equals_the_expanded_labels():
    # the clustering gathers counts from every rank; a mapping with counts > 1 must give what the
    # same samples give one by one
    pairs = Counter({(0, "a"): 5, (0, "b"): 2, (1, "b"): 7, (2, 3): 4, (2, "a"): 1})
    clusters, truth = label_codes(pairs)
    assert len(clusters) == len(truth) == 19
    assert Counter(zip(clusters.tolist(), truth.tolist())) == Counter(
        {(0, 1): 5, (0, 2): 2, (1, 2): 7, (2, 0): 4, (2, 1): 1})  # truths ordered by str: 3, a, b
    a = agreement(pairs)
    assert a["purity"] == pytest.approx((5 + 7 + 4) / 19)
    assert a["nmi"] == pytest.approx(_reference(pairs)[1], rel=1e-12)


def test_edge_cases():
    perfect = agreement(pairs_from_labels([0, 0, 1, 1, 2], ["a", "a", "b", "b", "c"]))
    assert perfect["purity"] == 1.0 and perfect["nmi"] == pytest.approx(1.0)
    trivial = agreement(Counter({(3, "x"): 4}))  # one cluster, one class: both partitions trivial
    assert trivial["purity"] == 1.0 and trivial["nmi"] == 1.0
    assert _reference(Counter({(3, "x"): 4})) == (1.0, 1.0)
    empty = agreement(Counter())
    assert np.isnan(empty["purity"]) and np.isnan(empty["nmi"]) and empty["samples_with_truth"] == 0


def test_size_stats_and_report(tmp_path):
    sizes = np.array([0, 0, 1, 3, 10, 50], np.int64)
    s = size_stats(sizes, tiny=5)
    assert (s["empty_clusters"], s["tiny_clusters"], s["samples"], s["max_size"]) == (2, 2, 64, 50)
    rep = build_report(sizes, {(4, "x"): 10, (5, "y"): 50, (3, "x"): 3, (2, "y"): 1}, "concept",
                       extra={"objective": 0.9, "skipped": {"bad_image": 2}})
    table = format_table(rep)
    assert "purity" in table and "empty clusters" in table and "bad_image 2" in table
    png = tmp_path / "h.png"
    plot_histogram(sizes, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
