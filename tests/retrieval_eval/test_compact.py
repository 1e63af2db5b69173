"""``--dims`` / ``--pca-fit``: each row of the compact table equals a brute-force computation on
the same reduced vectors, made independently (numpy truncation, numpy SVD for the PCA), and
bad requests fail in one line before any work."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from retrieval_eval.cli import main
from retrieval_eval.compact import PCA
from retrieval_eval.options import BadRequestError, EvalOptions
from retrieval_eval.pipeline import labels_benchmark, run_evaluation

from . import reference as ref
from .test_index_eval import brute_force_metrics, clustered, decoded_database

FAST = dict(device="cpu", workers=0, progress=False)
CLI_FAST = ["--device", "cpu", "--workers", "0", "--no-progress"]


def svd_pca(fit: np.ndarray, x: np.ndarray, d: int) -> np.ndarray:
    """Independent PCA: centre the normalised fit rows, take the top-d right singular vectors."""
    f = ref.unit(fit)
    mean = f.mean(axis=0)
    _, _, vt = np.linalg.svd(f - mean, full_matrices=False)
    return (ref.unit(x) - mean) @ vt[:d].T


def _row(rows, method, d, dtype):
    [row] = [r for r in rows if r["method"] == method and r["dims"] == d and r["dtype"] == dtype]
    return row


def _close(measured, expected, n):
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, abs=1.0 / n + 1e-9), key


def test_truncation_pca_and_float16_rows_match_brute_force_on_the_reduced_vectors(tmp_path):
    x, labels = clustered(200, dim=24, seed=10)
    fit, _ = clustered(300, dim=24, seed=11)  # same kind of data, other images
    np.save(tmp_path / "fit.npy", fit)
    ev = run_evaluation(None, None, embeddings=x, labels=labels,
                        options=EvalOptions(dims=[4, 8, 16], pca_fit=str(tmp_path / "fit.npy"), **FAST))
    comp = ev.results["compact"]
    assert comp["dims"] == [4, 8, 16] and comp["metric"] == "R@1" and comp["pca_fit"]["rows"] == 300
    rows = comp["rows"]
    assert _row(rows, "full", 24, "float32")["metrics"] == ev.results["metrics"]
    for d in (4, 8, 16):
        trunc = x[:, :d].astype(np.float64)
        _close(_row(rows, "truncate", d, "float32")["metrics"],
               brute_force_metrics(trunc, ref.unit(trunc), labels, labels, True), len(x))
        proj = svd_pca(fit, x, d)
        _close(_row(rows, "pca", d, "float32")["metrics"],
               brute_force_metrics(proj, ref.unit(proj), labels, labels, True), len(x))
        half = ref.unit(trunc).astype(np.float16).astype(np.float64)
        _close(_row(rows, "truncate", d, "float16")["metrics"],
               brute_force_metrics(half, ref.unit(half), labels, labels, True), len(x))
        assert _row(rows, "truncate", d, "float32")["bytes_per_vector"] == 4 * d
        assert _row(rows, "pca", d, "float16")["bytes_per_vector"] == 2 * d
        # the variance the first d axes explain, as numpy's SVD counts it
        f = ref.unit(fit) - ref.unit(fit).mean(axis=0)
        s = np.linalg.svd(f, compute_uv=False) ** 2
        assert comp["pca_fit"]["explained_variance"][str(d)] == pytest.approx(s[:d].sum() / s.sum(), abs=1e-4)


def test_pca_projection_equals_an_svd_fitted_independently():
    fit, _ = clustered(150, dim=12, seed=12)
    x, _ = clustered(40, dim=12, seed=13)
    pca = PCA.fit(fit, 6)
    for d in (2, 6):
        mine, theirs = pca.project(x, d), ref.unit(svd_pca(fit, x, d))
        # principal axes are defined up to sign: compare the cosine similarities they give
        np.testing.assert_allclose(mine @ mine.T, theirs @ theirs.T, atol=1e-5)


def test_query_gallery_dims_with_an_ivf_pq_index_row(tmp_path):
    q, ql = clustered(60, dim=16, seed=14)
    g, gl = clustered(300, dim=16, seed=15)
    bench = labels_benchmark(ql, gl)
    ev = run_evaluation(benchmark=bench, embeddings=np.concatenate([q, g]),
                        options=EvalOptions(dims=[8], index_type="IVF2,PQ8x4", index_params="nprobe=2",
                                            output=str(tmp_path / "out"), **FAST))
    rows = ev.results["compact"]["rows"]
    trunc_q, trunc_g = q[:, :8].astype(np.float64), g[:, :8].astype(np.float64)
    _close(_row(rows, "truncate", 8, "float32")["metrics"],
           brute_force_metrics(trunc_q, ref.unit(trunc_g), ql, gl, False), len(q))
    [index_row] = [r for r in rows if r["method"].startswith("index")]
    assert index_row["dtype"] == "code" and index_row["bytes_per_vector"] == 4  # 8 x 4-bit codes
    _close(index_row["metrics"], brute_force_metrics(q, decoded_database(g, "IVF2,PQ8x4"), ql, gl, False), len(q))
    from retrieval_eval.outputs import write_outputs

    written = write_outputs(ev, EvalOptions(dims=[8], output=str(tmp_path / "out"), **FAST))
    png = tmp_path / "out" / "compact.png"
    assert png in written
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] > 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["compact"]["plot"] == str(png) and len(saved["compact"]["rows"]) == len(rows)


def test_dims_above_the_embedding_size_fail_before_anything_is_embedded(sample_set, tiny_export, tmp_path, capsys):
    root, _ = sample_set
    out = tmp_path / "out"
    rc = main(["--benchmark", "sample", "--data-root", str(root), "--model", str(tiny_export), "--dims", "16", "64",
               "--output", str(out), *CLI_FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err == "unicom-eval: --dims 64: the embedding has 32 dimensions; give values between 1 and 32"
    assert not out.exists()


def test_pca_fit_on_the_test_images_is_refused(sample_set, tiny_export, tmp_path, capsys):
    root, _ = sample_set
    for source in (str(root / "heldout"), str(root)):
        rc = main(["--benchmark", "sample", "--data-root", str(root), "--model", str(tiny_export), "--dims", "8",
                   "--pca-fit", source, "--output", str(tmp_path / "out"), *CLI_FAST])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err
        assert err.startswith(f"unicom-eval: --pca-fit {source}: the folder holds ") and "never the test set" in err
    # a list file naming a test image
    first = sorted((root / "heldout").rglob("*.jpg"))[0]
    (tmp_path / "fit.txt").write_text(f"{first}\n")
    rc = main(["--benchmark", "sample", "--data-root", str(root), "--model", str(tiny_export), "--dims", "8",
               "--pca-fit", str(tmp_path / "fit.txt"), *CLI_FAST])
    assert rc == 2 and "1 of its images are sample's test images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_precomputed_fit_vectors_that_are_the_test_embeddings_are_refused(tmp_path):
    x, labels = clustered(100, dim=8, seed=16)
    np.save(tmp_path / "fit.npy", x)
    with pytest.raises(ValueError, match="100 of its 100 vectors are the test set's own embeddings"):
        run_evaluation(None, None, embeddings=x, labels=labels,
                       options=EvalOptions(dims=[4], pca_fit=str(tmp_path / "fit.npy"), **FAST))


def test_pca_fit_on_the_sample_training_shards_end_to_end(sample_set, tiny_export, tmp_path, capsys):
    root, _ = sample_set
    out = tmp_path / "out"
    rc = main(["--benchmark", "sample", "--data-root", str(root), "--model", str(tiny_export), "--dims", "8", "16",
               "--pca-fit", "sample", "--pca-fit-samples", "200", "--output", str(out),
               "--distractor-cache", str(tmp_path / "cache"), *CLI_FAST])
    printed = capsys.readouterr().out
    assert rc == 0 and "compact embeddings (PCA fitted on sample training shards" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["compact"]["pca_fit"]["rows"] == 200
    assert {(r["method"], r["dims"]) for r in res["compact"]["rows"]} >= {("pca", 8), ("pca", 16), ("truncate", 8)}
    assert (out / "compact.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--pca-fit", "cub"], "--pca-fit is for --dims"),
    (["--dims", "0"], "--dims needs positive integers"),
    (["--dims", "8", "--pca-fit", "nowhere/at/all"], "--pca-fit nowhere/at/all: neither a dataset"),
    (["--index-type", "IVF4,Nope"], "--index-type 'IVF4,Nope' is not a faiss index_factory string"),
])
def test_bad_requests_are_one_line(tmp_path, capsys, argv, message):
    x, labels = clustered(50, dim=16)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "l.npy", labels)
    rc = main(["--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.npy"), *argv, *CLI_FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and message in err


def test_pca_fit_images_need_an_encoder(tmp_path):
    x, labels = clustered(50, dim=16)
    (tmp_path / "imgs").mkdir()
    with pytest.raises(BadRequestError, match="images need an encoder"):
        run_evaluation(None, None, embeddings=x, labels=labels,
                       options=EvalOptions(dims=[4], pca_fit=str(tmp_path / "imgs"), **FAST))


def test_on_the_sample_set_the_index_and_dims_tables_match_brute_force(sample_set, tiny_export, tmp_path):
    """The demo's benchmark end to end: images → tiny encoder → tables, then the same tables
    recomputed by brute force from the saved embeddings (PQ codes decoded independently)."""
    from retrieval_eval.loaders import load_benchmark

    root, _ = sample_set
    out, emb_file = tmp_path / "out", tmp_path / "emb.npy"
    spec = "IVF2,PQ8x4"
    rc = main(["--benchmark", "sample", "--data-root", str(root), "--model", str(tiny_export), "--index-type", spec,
               "--index-params", "nprobe=2", "--dims", "8", "16", "--output", str(out), "--save-embeddings",
               str(emb_file), *CLI_FAST])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    emb = np.load(emb_file).astype(np.float64)
    labels = load_benchmark("sample", root).queries.labels
    assert len(emb) == len(labels) == res["sizes"]["queries"]
    _close(res["index"]["metrics"], brute_force_metrics(emb, decoded_database(emb, spec), labels, labels, True),
           len(emb))
    for d in (8, 16):
        trunc = emb[:, :d]
        _close(_row(res["compact"]["rows"], "truncate", d, "float32")["metrics"],
               brute_force_metrics(trunc, ref.unit(trunc), labels, labels, True), len(emb))


def test_pca_fit_on_the_benchmarks_own_train_split(tmp_path, tiny_export, capsys):
    from . import fake_trees as fake

    fake.cub(tmp_path / "data")  # classes 1 and 100 train, 101, 150 and 200 test
    out = tmp_path / "out"
    rc = main(["--benchmark", "cub", "--data-root", str(tmp_path / "data"), "--model", str(tiny_export), "--dims", "4",
               "--pca-fit", "cub", "--output", str(out), "--distractor-cache", str(tmp_path / "cache"), *CLI_FAST])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    fit = res["compact"]["pca_fit"]
    assert fit["kind"] == "train_split" and fit["rows"] == 6 and fit["description"].startswith("cub train split")
    assert res["sizes"]["queries"] == 9
    # PCA to 8 dimensions needs 8 fit vectors: the 6 training images are refused before any work
    rc = main(["--benchmark", "cub", "--data-root", str(tmp_path / "data"), "--model", str(tiny_export), "--dims", "8",
               "--pca-fit", "cub", *CLI_FAST])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("unicom-eval: --pca-fit has 6 vectors, fewer than --dims 8: PCA to d dimensions needs "
                               "at least d fit vectors; name a larger fit set or smaller --dims")
