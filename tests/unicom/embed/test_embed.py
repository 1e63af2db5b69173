"""unicom-embed and unicom-search on the sample set, with a tiny random-init encoder."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from unicom.data.transforms import CLIP_MEAN, CLIP_STD
from unicom.embed import Searcher, build_index_dir, choose_index_type
from unicom.embed.cli import main as embed_main
from unicom.embed.index import FLAT_MAX, HNSW_MAX, default_nlist
from unicom.embed.search_cli import main as search_main
from unicom.formats.atomic_io import read_npy
from unicom.formats.export import save_export
from unicom.formats.features import read_keys, read_meta
from unicom.models.vit import build_vit


@pytest.fixture(scope="module")
def folder_run(sample_set, encoder, tmp_path_factory):
    root, _ = sample_set
    out = tmp_path_factory.mktemp("embed_folder")
    rc = embed_main(["--model", str(encoder), "--data", str(root / "heldout"), "--output", str(out), "--workers", "0",
                     "--batch-size", "16", "--no-progress"])
    assert rc == 0
    return out


def test_folder_embedding_writes_the_features_format(folder_run, sample_set):
    root, manifest = sample_set
    feats = read_npy(folder_run / "features" / "images.npy")
    keys = read_keys(folder_run / "features" / "images.keys")
    n = sum(manifest["heldout_counts"].values())
    assert feats.dtype == np.float16 and feats.shape == (n, 32) and len(keys) == n
    assert np.allclose(np.linalg.norm(feats.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert keys == sorted(keys) and all((root / "heldout" / k).is_file() for k in keys)
    meta = read_meta(folder_run / "features")
    assert meta["dim"] == 32 and meta["image_size"] == 32 and meta["sources"]["images"]["kind"] == "files"
    index_meta = json.loads((folder_run / "index" / "index.json").read_text())
    assert index_meta["type"] == "flat" and index_meta["n"] == n


def test_searching_the_folder_index_returns_each_image_as_its_own_top1(folder_run, sample_set):
    root, _ = sample_set
    searcher = Searcher(folder_run, device="cpu", progress=False)
    keys = searcher.index.keys
    hits = searcher.search_images([root / "heldout" / k for k in keys], k=3)
    assert [h[0].key for h in hits] == keys
    assert all(h[0].score > 0.999 and h[0].rank == 1 and len(h) == 3 for h in hits)
    assert hits[0][0].path == str(root / "heldout" / keys[0])


def test_search_cli_prints_paths_and_scores_and_writes_json_and_png(folder_run, sample_set, tmp_path, capsys):
    root, _ = sample_set
    query = sorted((root / "heldout").rglob("*.jpg"))[5]
    rc = search_main(["--index", str(folder_run / "index"), str(query), str(root / "heldout" / "digit_7"),
                      "--top-k", "4", "--device", "cpu", "--output", str(tmp_path / "found"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    first = out.splitlines()[1].split()
    assert first[0] == "1" and float(first[1]) > 0.999 and first[2] == str(query)
    assert (tmp_path / "found" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((tmp_path / "found" / "results.json").read_text())
    assert len(results) == 1 + 10 and all(len(r["hits"]) == 4 for r in results)


def test_search_cli_old_flags_still_work_and_warn(folder_run, sample_set, tmp_path, capsys):
    root, _ = sample_set
    query = sorted((root / "heldout").rglob("*.jpg"))[0]
    png, js = tmp_path / "old.png", tmp_path / "old.json"
    assert search_main(["--index", str(folder_run), str(query), "--k", "2", "--device", "cpu", "--png", str(png),
                        "--json", str(js), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--k is deprecated, use --top-k" in err and "--png is deprecated" in err and "--json is deprecated" in err
    assert png.is_file() and len(json.loads(js.read_text())[0]["hits"]) == 2


def test_search_refuses_an_encoder_other_than_the_index_s(folder_run, sample_set, tmp_path, capsys):
    root, _ = sample_set
    other = tmp_path / "other"
    torch.manual_seed(1)
    save_export(build_vit("ViT-Tiny/8@32").eval(), other, 32, CLIP_MEAN, CLIP_STD, 32)  # same shapes, other weights
    query = sorted((root / "heldout").rglob("*.jpg"))[0]
    rc = search_main(["--index", str(folder_run), str(query), "--model", str(other), "--device", "cpu",
                      "--output", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "built with another encoder" in err[0] and str(other) in err[0]
    assert not (tmp_path / "r").exists()
    # the index's own encoder, named explicitly, is accepted
    own = json.loads((folder_run / "index" / "index.json").read_text())["model"]
    assert search_main(["--index", str(folder_run), str(query), "--model", own, "--device", "cpu",
                        "--output", str(tmp_path / "ok"), "--no-progress", "--no-png"]) == 0


def test_embed_old_flags_still_work_and_warn(sample_set, encoder, tmp_path, capsys):
    root, _ = sample_set
    imgs = sorted((root / "heldout").rglob("*.jpg"))[:4]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in imgs))
    assert embed_main(["--model", str(encoder), "--input", str(tmp_path / "list.txt"), "--out", str(tmp_path / "o"),
                       "--index", "hnsw", "--workers", "0", "--no-progress"]) == 0
    err = capsys.readouterr().err
    for o, n in (("--input", "--data"), ("--out", "--output"), ("--index", "--index-type")):
        assert f"unicom-embed: warning: {o} is deprecated, use {n}" in err
    assert json.loads((tmp_path / "o" / "index" / "index.json").read_text())["type"] == "hnsw"


def test_clip_retrieval_format_reads_back_with_pyarrow(sample_set, encoder, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    root, _ = sample_set
    folder = tmp_path / "imgs"
    folder.mkdir()
    srcs = sorted((root / "heldout").rglob("*.jpg"))[:5]
    for i, src in enumerate(srcs):
        (folder / f"{i}.jpg").write_bytes(src.read_bytes())
    (folder / "1.txt").write_text("a caption beside its image\n")
    out = tmp_path / "out"
    assert embed_main(["--model", str(encoder), "--data", str(folder), "--output", str(out), "--format",
                       "clip-retrieval", "--workers", "0", "--no-progress"]) == 0
    emb = np.load(out / "img_emb" / "img_emb_0.npy")
    table = pq.read_table(out / "metadata" / "metadata_0.parquet")
    assert table.column_names == ["image_path", "key", "caption"] and table.num_rows == len(emb) == 5
    meta = table.to_pydict()
    assert meta["key"] == [f"{i}.jpg" for i in range(5)]
    assert meta["image_path"] == [str(folder / f"{i}.jpg") for i in range(5)]
    assert meta["caption"] == [None, "a caption beside its image", None, None, None]
    assert emb.dtype == np.float32 and emb.shape == (5, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=2e-3)
    # row i of img_emb is row i of the faiss index, and each image finds itself
    searcher = Searcher(out, device="cpu", progress=False)
    assert searcher.index.keys == meta["key"]
    hits = searcher.search_vectors(emb, k=1)
    assert [h[0].id for h in hits] == list(range(5))


def test_clip_retrieval_captions_of_shards_come_from_their_txt(shard_run, tmp_path):
    pytest.importorskip("pyarrow")
    from unicom.embed.clip_retrieval import export_clip_retrieval

    out, _ = shard_run
    _, meta_path = export_clip_retrieval(out, tmp_path)
    import pyarrow.parquet as pq

    rows = pq.read_table(meta_path).to_pylist()
    with_caption = [r for r in rows if r["caption"]]
    assert len(with_caption) >= len(rows) - 1 and all("::" in r["image_path"] for r in rows)


@pytest.fixture(scope="module")
def shard_run(sample_set, encoder, tmp_path_factory):
    root, _ = sample_set
    out = tmp_path_factory.mktemp("embed_shards")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = embed_main(["--model", str(encoder), "--data", str(root / "shards"), "--output", str(out),
                         "--workers", "2", "--no-progress"])
    assert rc == 0
    return out, printed.getvalue()


def test_shards_embed_with_bad_samples_skipped_and_counted(shard_run, sample_set):
    out, printed = shard_run
    _, manifest = sample_set
    # The bad shard's samples are skipped and counted (a missing caption does not matter here).
    expected = {r for r in manifest["bad_samples"].values() if r != "missing_caption"}
    for reason in expected:
        assert reason in printed
    assert set(read_meta(out / "features")["skipped"]) == expected
    keys = [k for name in ("00000", "00001", "00002", "00003") for k in read_keys(out / "features" / f"{name}.keys")]
    assert len(keys) == len(set(keys)) >= manifest["num_train_samples"]
    assert json.loads((out / "index" / "index.json").read_text())["type"] == "flat"


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_every_shard_sample_finds_itself(shard_run, kind, tmp_path):
    out, _ = shard_run
    index_dir = build_index_dir(out, tmp_path / kind, kind)
    searcher = Searcher(index_dir, device="cpu", progress=False)
    assert searcher.index.kind == kind
    n = len(searcher.index)
    images = [searcher.open_image(i) for i in range(n)]  # read back from the tar shards
    assert all(im is not None for im in images)
    hits = searcher.search_images(images, k=1)
    assert [h[0].id for h in hits] == list(range(n))


def test_finished_shards_are_skipped_on_a_rerun(shard_run, sample_set, tmp_path):
    from unicom.embed import embed_to_features

    root, _ = sample_set
    out, _ = shard_run
    shutil.copytree(out / "features", tmp_path / "features")
    before = (tmp_path / "features" / "00001.npy").stat().st_mtime_ns
    old = read_npy(tmp_path / "features" / "00002.npy")
    (tmp_path / "features" / "00002.npy").unlink()
    again = embed_to_features(str(read_meta(out / "features")["model"]), str(root / "shards"), tmp_path, workers=0,
                              progress=False)
    # 00003 is the sample set's truncated shard: recorded truncated and unchanged since, it is read once
    assert sorted(again.written) == ["00002"] and sorted(again.skipped_shards) == ["00000", "00001", "00003"]
    assert (tmp_path / "features" / "00001.npy").stat().st_mtime_ns == before
    assert np.array_equal(read_npy(tmp_path / "features" / "00002.npy"), old)


def test_list_file_keys_are_the_listed_paths_and_bad_images_are_counted(sample_set, encoder, tmp_path):
    from unicom.embed import embed_to_features

    root, _ = sample_set
    imgs = sorted((root / "heldout").rglob("*.jpg"))[:6]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    lines = ["# queries", *[str(p) for p in imgs[:3]], "broken.jpg", *[str(p) for p in imgs[3:]]]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    res = embed_to_features(str(encoder), str(tmp_path / "list.txt"), tmp_path / "out", workers=0, progress=False)
    assert res.skips.as_dict() == {"bad_image": 1}
    assert read_keys(tmp_path / "out" / "features" / "images.keys") == [str(p) for p in imgs]
    # An index over it, built separately, finds every listed image.
    build_index_dir(tmp_path / "out", tmp_path / "out" / "index", "flat")
    hits = Searcher(tmp_path / "out", device="cpu", progress=False).search_images(imgs, k=1)
    assert [h[0].key for h in hits] == [str(p) for p in imgs]


def test_features_of_another_encoder_are_not_mixed(sample_set, encoder, tmp_path):
    from unicom.embed import embed_to_features

    root, _ = sample_set
    embed_to_features(str(encoder), str(root / "heldout"), tmp_path, workers=0, progress=False)
    other = tmp_path / "other"
    save_export(build_vit("ViT-Tiny/16@64").eval(), other, 64, CLIP_MEAN, CLIP_STD, 64)
    with pytest.raises(ValueError, match="another encoder"):
        embed_to_features(str(other), str(root / "heldout"), tmp_path, workers=0, progress=False)
    assert embed_main(["--model", str(other), "--data", str(root / "heldout"), "--output", str(tmp_path),
                       "--no-progress"]) == 2


def test_index_choice_by_collection_size():
    assert choose_index_type(1) == choose_index_type(FLAT_MAX) == "flat"
    assert choose_index_type(FLAT_MAX + 1) == choose_index_type(HNSW_MAX) == "hnsw"
    assert choose_index_type(HNSW_MAX + 1) == "ivf"
    assert default_nlist(10_000_000) == int(4 * 10_000_000 ** 0.5)
    assert default_nlist(100) == 2 and default_nlist(10) == 1


def test_missing_input_and_index_are_clear_errors(encoder, tmp_path, capsys):
    assert embed_main(["--model", str(encoder), "--data", str(tmp_path / "nothing"), "--output", str(tmp_path),
                       "--no-progress"]) == 2
    assert "input not found" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no index"):
        Searcher(tmp_path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_embedding_matches_the_cpu(folder_run, sample_set, tmp_path):
    from unicom.embed import embed_to_features

    root, _ = sample_set
    model = read_meta(folder_run / "features")["model"]
    for precision in ("fp16", "bf16"):
        out = tmp_path / precision
        res = embed_to_features(model, str(root / "heldout"), out, device="cuda", precision=precision, workers=2,
                                progress=False)
        assert next(res.encoder.model.parameters()).is_cuda
        gpu = read_npy(out / "features" / "images.npy").astype(np.float32)
        cpu = read_npy(folder_run / "features" / "images.npy").astype(np.float32)
        assert (gpu * cpu).sum(1).min() > 0.99
