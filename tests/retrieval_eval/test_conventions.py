"""The conventions a pytorch-metric-learning, revisitop or Kaggle user checks: the GLDv2
denominator, the R cap, per-class averages, and clean refusals of bad ground-truth files."""
from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys

import numpy as np
import pytest

import retrieval_eval
from retrieval_eval.pipeline import labels_benchmark
from retrieval_eval.scoring import score

from . import fake_trees as fake
from .reference import ap_rp_per_query, rankings

FAST = dict(device="cpu", workers=0, progress=False)


def kaggle_map_at_100(predictions, solution):
    """The Kaggle GLDv2 retrieval metric, as its description states it: for each query,
    (1 / min(m, 100)) * sum_k P(k) rel(k) over the first 100 predictions, m = the number of ids
    in the solution row; the mean over the solution's queries."""
    total = 0.0
    for query, relevant in solution.items():
        hits, ap = 0, 0.0
        for k, pred in enumerate(predictions[query][:100], start=1):
            if pred in relevant:
                hits += 1
                ap += hits / k
        total += ap / min(len(relevant), 100)
    return total / len(solution)


def test_gldv2_missing_relevant_ids_count_in_the_denominator_as_in_kaggle(tmp_path, caplog):
    index_ids = ["a000000000000001", "b000000000000002", "c000000000000003"]
    test_ids = ["f000000000000001", "f000000000000002"]
    for i, x in enumerate(index_ids):
        fake.jpeg(tmp_path / "index" / x[0] / x[1] / x[2] / f"{x}.jpg", i)
    (tmp_path / "index.csv").write_text("id\n" + "\n".join(index_ids) + "\n")
    missing = "d0000000000000ff"  # in the solution, not in index.csv
    solution = {test_ids[0]: {index_ids[0], missing}, test_ids[1]: {index_ids[1]}}
    (tmp_path / "retrieval_solution_v2.1.csv").write_text(
        "id,images,Usage\n" + "".join(f"{q},{' '.join(sorted(r))},Private\n" for q, r in solution.items()))
    q = np.eye(4, dtype=np.float32)[[0, 1]]  # query 0 finds index 0 first, query 1 index 1
    g = np.eye(4, dtype=np.float32)[[0, 1, 2]] + 0.01
    with caplog.at_level(logging.WARNING):
        res = retrieval_eval.evaluate(benchmark="gldv2", data_root=tmp_path, embeddings=np.concatenate([q, g]),
                                      output=str(tmp_path / "out"), **FAST)
    order = rankings(q, g)
    predictions = {test_ids[i]: [index_ids[j] for j in order[i]] for i in range(2)}
    assert order[0][0] == 0
    expected = kaggle_map_at_100(predictions, solution)
    assert expected == pytest.approx((0.5 + 1.0) / 2)
    assert res["metrics"]["mAP@100"] == pytest.approx(expected, abs=1e-12)
    assert res["metrics"]["relevant_ids_not_in_index"] == 1
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["metrics"]["relevant_ids_not_in_index"] == 1
    assert any("not in index.csv" in r.getMessage() for r in caplog.records)


def _per_query_reference(x, labels, max_r=None):
    order = rankings(x)
    r1 = []
    for i, row in enumerate(order):
        r1.append(float(labels[row[0]] == labels[i]))
    return np.array(r1), ap_rp_per_query(order, labels, labels, True, max_r)[0]


def test_per_class_figures_and_avg_of_avgs_match_a_direct_computation(tie_data):
    x, labels = tie_data
    r1, aps = _per_query_reference(x, labels)
    scored = score(labels_benchmark(labels), x, None, ks=[1], max_r=None, device="cpu")
    by_label = {rec["label"]: rec for rec in scored.per_class}
    class_r1, class_ap = [], []
    for c in np.unique(labels):
        rows = labels == c
        assert by_label[int(c)]["queries"] == int(rows.sum())
        assert by_label[int(c)]["R@1"] == pytest.approx(r1[rows].mean(), abs=1e-12)
        class_r1.append(r1[rows].mean())
        if np.isnan(aps[rows]).all():
            assert by_label[int(c)]["MAP@R"] is None
        else:
            assert by_label[int(c)]["MAP@R"] == pytest.approx(np.nanmean(aps[rows]), abs=1e-12)
            class_ap.append(np.nanmean(aps[rows]))
    avg = retrieval_eval.evaluate_embeddings(x, labels, ks=[1], max_r=None, avg_of_avgs=True, device="cpu")
    assert avg["R@1"] == pytest.approx(np.mean(class_r1), abs=1e-12)
    assert avg["MAP@R"] == pytest.approx(np.mean(class_ap), abs=1e-12)
    micro = retrieval_eval.evaluate_embeddings(x, labels, ks=[1], max_r=None, device="cpu")
    assert micro["R@1"] == pytest.approx(r1.mean(), abs=1e-12)


def test_max_r_none_is_uncapped_and_the_cap_is_shown(tmp_path, capsys):
    from retrieval_eval.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    labels = np.array([0] * 40 + [1] * 20)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    _, aps_uncapped = _per_query_reference(x, labels)
    _, aps_capped = _per_query_reference(x, labels, max_r=5)
    assert main(["--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--max-r", "none",
                 "--output", str(tmp_path / "a"), "--device", "cpu", "--no-progress"]) == 0
    assert "R uncapped" in capsys.readouterr().out
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["settings"]["max_r"] is None and res["metrics"]["queries_r_capped"] == 0
    assert res["metrics"]["MAP@R"] == pytest.approx(np.nanmean(aps_uncapped), abs=1e-12)
    assert main(["--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--max-r", "5",
                 "--output", str(tmp_path / "b"), "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "R capped at 5" in printed and "MAP@R (R<=5)" in printed
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["settings"]["max_r"] == 5 and res["metrics"]["queries_r_capped"] == 60
    assert res["metrics"]["MAP@R"] == pytest.approx(np.nanmean(aps_capped), abs=1e-12)
    per_class = json.loads((tmp_path / "b" / "per_class.json").read_text())
    assert [c["queries"] for c in per_class["classes"]] == [40, 20]


class _CallsSystem:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def _refused(tmp_path):
    d = tmp_path / "roxford5k"
    d.mkdir()
    (d / "gnd_roxford5k.pkl").write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_CallsSystem()]}))
    return "roxford5k", "gnd_roxford5k.pkl"


def _truncated(tmp_path):
    fake.revisitop(tmp_path)
    path = tmp_path / "roxford5k" / "gnd_roxford5k.pkl"
    path.write_bytes(path.read_bytes()[:40])
    return "roxford5k", "gnd_roxford5k.pkl"


def _bad_csv(tmp_path):
    fake.gldv2(tmp_path)
    (tmp_path / "retrieval_solution_v2.1.csv").write_bytes(b"\xff\xfe\x00garbage,\x00\n\x80\x81\n")
    return "gldv2", "retrieval_solution_v2.1.csv"


@pytest.mark.parametrize("make", [_refused, _truncated, _bad_csv])
def test_an_unreadable_ground_truth_file_is_one_line_naming_it(make, tmp_path):
    benchmark, name = make(tmp_path)
    np.save(tmp_path / "e.npy", np.zeros((3, 4), np.float32))
    proc = subprocess.run([sys.executable, "-m", "retrieval_eval.cli", "--benchmark", benchmark, "--data-root",
                           str(tmp_path), "--embeddings", str(tmp_path / "e.npy"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("unicom-eval: ") and name in lines[0] and "Traceback" not in proc.stderr


def test_the_table_is_printed_before_a_failing_write(tmp_path, tie_data, capsys):
    from retrieval_eval.cli import main

    x, labels = tie_data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    (tmp_path / "a_file").write_text("not a folder")
    rc = main(["--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--output",
               str(tmp_path / "a_file" / "out"), "--device", "cpu", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1 and "R@1" in out
    assert len(err.strip().splitlines()) == 1 and err.startswith("unicom-eval: could not write")


def test_help_is_complete_and_imports_nothing_heavy():
    code = ("import sys, time; t = time.time(); from retrieval_eval.cli import build_parser; "
            "h = build_parser().format_help(); print(time.time() - t); "
            "print(any(m in sys.modules for m in ('torch', 'faiss', 'numpy', 'matplotlib'))); print(h)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    seconds, heavy, text = proc.stdout.split("\n", 2)
    assert heavy == "False" and float(seconds) < 1.0
    from retrieval_eval.cli import build_parser

    parser = build_parser()
    formatter = parser.formatter_class(parser.prog)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and "%(default)" in formatter._get_help_string(action), action.dest
            assert action.option_strings[0] in text


def test_old_flag_names_still_work_with_a_warning(tmp_path, tie_data, capsys):
    from retrieval_eval.cli import main

    x, labels = tie_data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    assert main(["--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--k", "1,3",
                 "--output", str(tmp_path / "old.json"), "--device", "cpu", "--no-progress"]) == 0
    assert "--k is deprecated, use --recall-at" in capsys.readouterr().err
    res = json.loads((tmp_path / "old.json").read_text())
    assert res["settings"]["ks"] == [1, 3] and (tmp_path / "old.per_class.json").is_file()
