"""Stale work is never reused (docs/failure_modes.md): encoder weights rewritten at the same path,
files renamed or swapped in an image folder, a shard that stays truncated; and the rough edges of
unicom-embed / unicom-search under faults (unreadable queries, symlink loops, faiss noise)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

from tests.tar_files import write_tar
from unicom.data.transforms import CLIP_MEAN, CLIP_STD
from unicom.embed import Searcher, build_index_dir, embed_to_features
from unicom.embed.cli import main as embed_main
from unicom.embed.search_cli import main as search_main
from unicom.formats import features as ff
from unicom.formats.export import save_export
from unicom.formats.fingerprint import file_sha256
from unicom.models.vit import build_vit


def _export(path, seed: int):
    """A random ViT-Tiny/8@32 export at ``path`` (what more training at the same path writes)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_vit("ViT-Tiny/8@32").eval()
    save_export(model, path, 32, CLIP_MEAN, CLIP_STD, 32)
    return path


def _photos(sample_set, dest, concepts: int = 2):
    """A private image folder: the first ``concepts`` held-out concepts of the sample set."""
    root, _ = sample_set
    for d in sorted((root / "heldout").iterdir())[:concepts]:
        shutil.copytree(d, dest / d.name)
    return dest


def _embed_args(model, data, out):
    return ["--model", str(model), "--data", str(data), "--output", str(out), "--workers", "0", "--no-progress"]


def test_an_encoder_rewritten_at_the_same_path_is_embedded_again_and_an_old_index_is_refused(
        sample_set, tmp_path, capsys, caplog):
    photos = _photos(sample_set, tmp_path / "photos")
    export = _export(tmp_path / "run" / "export", seed=0)
    out = tmp_path / "emb"
    assert embed_main(_embed_args(export, photos, out)) == 0
    first = json.loads((out / "index" / "index.json").read_text())
    assert first["weights_sha256"] == file_sha256(export / "model.safetensors")
    old = ff.read_features(ff.features_dir(out), "images", mmap=False)
    capsys.readouterr()

    _export(export, seed=1)  # more training rewrote export/ in place
    query = sorted(photos.rglob("*.jpg"))[3]
    assert search_main([str(query), "--index", str(out), "--output", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unicom-search: error: the encoder's weights ") and "\n" not in err
    assert "changed since the index" in err and f"--output {out}" in err
    assert not (tmp_path / "s").exists()

    assert embed_main(_embed_args(export, photos, out)) == 0
    printed = capsys.readouterr().out
    assert "already done" not in printed
    assert "changed since the features" in caplog.text
    again = json.loads((out / "index" / "index.json").read_text())
    assert again["weights_sha256"] == file_sha256(export / "model.safetensors") != first["weights_sha256"]
    new = ff.read_features(ff.features_dir(out), "images", mmap=False)
    assert new.shape == old.shape and not np.array_equal(new, old)
    # the rebuilt index and the new weights agree: the query finds itself
    hits = Searcher(out, device="cpu", progress=False).search_images([query], k=1)
    assert hits[0][0].key == query.relative_to(photos).as_posix() and hits[0][0].score > 0.999


def test_swapped_and_renamed_files_in_a_folder_are_embedded_again(sample_set, encoder, tmp_path, caplog):
    photos = _photos(sample_set, tmp_path / "photos")
    out = tmp_path / "emb"
    embed_to_features(str(encoder), str(photos), out, workers=0, progress=False)
    a, b = sorted((photos / sorted(os.listdir(photos))[0]).glob("*.jpg"))[0], \
        sorted((photos / sorted(os.listdir(photos))[1]).glob("*.jpg"))[0]
    # swap two images of different concepts (count, summed size and newest mtime all hold)
    os.rename(a, tmp_path / "tmp.jpg")
    os.rename(b, a)
    os.rename(tmp_path / "tmp.jpg", b)
    res = embed_to_features(str(encoder), str(photos), out, workers=0, progress=False)
    assert res.skipped_shards == [] and res.written == {"images": 20}
    assert "renamed, swapped, added or removed" in caplog.text
    build_index_dir(out, out / "index", "flat")
    hits = Searcher(out, device="cpu", progress=False).search_images([a, b], k=1)
    assert [h[0].key for h in hits] == [a.relative_to(photos).as_posix(), b.relative_to(photos).as_posix()]
    assert all(h[0].score > 0.999 for h in hits)

    renamed = a.with_name("renamed.jpg")
    os.rename(a, renamed)
    res = embed_to_features(str(encoder), str(photos), out, workers=0, progress=False)
    assert res.written == {"images": 20}
    keys = ff.read_shard_keys(ff.features_dir(out), "images")
    assert renamed.relative_to(photos).as_posix() in keys and a.relative_to(photos).as_posix() not in keys
    # unchanged since: done
    assert embed_to_features(str(encoder), str(photos), out, workers=0, progress=False).skipped_shards == ["images"]


def test_a_shard_that_stays_truncated_is_read_once(sample_set, encoder, tmp_path, caplog):
    from retrieval_eval.distractors import load_distractors
    from unicom.pretrained.load import load_encoder

    root, _ = sample_set
    with tarfile.open(root / "shards" / "00000.tar") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()][:30]
    data = tmp_path / "data"
    data.mkdir()
    write_tar(data / "00000.tar", members)
    full = (data / "00000.tar").read_bytes()
    (data / "00000.tar").write_bytes(full[: len(full) * 2 // 3])  # cut for good
    out = tmp_path / "emb"
    first = embed_to_features(str(encoder), str(data), out, workers=0, progress=False)
    assert first.skips.counts.get("truncated_tar") == 1 and first.written["00000"] > 0
    with caplog.at_level("INFO"):
        second = embed_to_features(str(encoder), str(data), out, workers=0, progress=False)
    assert second.written == {} and second.skipped_shards == ["00000"]
    assert "truncated when it was read and unchanged since" in caplog.text
    # the distractor cache of such a shard is reused from the second run on
    enc = load_encoder(str(encoder), device="cpu")
    kw = dict(precision="fp32", cache_root=tmp_path / "cache", batch_size=16)
    assert not load_distractors(str(data), enc, **kw).reused_cache
    assert load_distractors(str(data), enc, **kw).reused_cache


def test_search_with_no_readable_query_is_one_line(sample_set, encoder, tmp_path, capsys):
    photos = _photos(sample_set, tmp_path / "photos", concepts=1)
    out = tmp_path / "emb"
    assert embed_main(_embed_args(encoder, photos, out)) == 0
    bad = tmp_path / "queries"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg at all")
    (bad / "empty.png").write_bytes(b"")
    capsys.readouterr()
    assert search_main([str(bad), "--index", str(out), "--output", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unicom-search: error: no query image could be read (") and "\n" not in err
    assert "broken.jpg and 1 more" in err


def test_a_symlink_loop_in_a_folder_is_counted_as_skipped(sample_set, encoder, tmp_path):
    photos = _photos(sample_set, tmp_path / "photos", concepts=1)
    os.symlink("loop_b.jpg", photos / "loop_a.jpg")
    os.symlink("loop_a.jpg", photos / "loop_b.jpg")
    os.symlink("gone.jpg", photos / "dangling.jpg")
    res = embed_to_features(str(encoder), str(photos), tmp_path / "emb", workers=0, progress=False)
    assert res.written == {"images": 10} and res.skips.counts == {"bad_image": 3}
    assert ff.read_record(ff.features_dir(tmp_path / "emb"), "images")["samples_read"] == 13
    again = embed_to_features(str(encoder), str(photos), tmp_path / "emb", workers=0, progress=False)
    assert again.skipped_shards == ["images"]


def test_messages_name_current_flags_only(sample_set, encoder, tmp_path):
    photos = _photos(sample_set, tmp_path / "photos", concepts=1)
    embed_to_features(str(encoder), str(photos), tmp_path, workers=0, progress=False)
    other = _export(tmp_path / "other", seed=3)
    with pytest.raises(ValueError, match="another encoder") as info:
        embed_to_features(str(other), str(photos), tmp_path, workers=0, progress=False)
    assert "--output" in str(info.value) and not re.search(r"--out\b", str(info.value))
    with pytest.raises(ValueError, match="already holds a shard named") as info:
        embed_to_features(str(encoder), str(tmp_path / "photos" / sorted(os.listdir(photos))[0]), tmp_path,
                          workers=0, progress=False)
    assert "--output" in str(info.value) and not re.search(r"--out\b", str(info.value))


def test_indexing_prints_no_faiss_loader_lines(tmp_path):
    """unicom-embed logs at INFO; faiss's loader used to add eight INFO lines that read like errors
    ("Could not load library with AVX512 support …"). A fresh process, as faiss logs on import."""
    ff.write_shard(tmp_path / "features", "s", np.eye(4, 8), ["a", "b", "c", "d"], {"samples_read": 4})
    code = ("import logging, sys; logging.basicConfig(level='INFO'); from unicom.embed.index import build_index_dir; "
            "print(build_index_dir(sys.argv[1], sys.argv[2], 'flat'))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "index")], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "index" / "index.json").is_file()
    assert "faiss.loader" not in proc.stderr and "Could not load library" not in proc.stderr, proc.stderr
