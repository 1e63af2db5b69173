"""The pseudo-class API against an independent count, and the command's one-line errors."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.unicom.serve.conftest import shard_concepts
from unicom.formats import features as ff
from unicom.serve.cli import main as serve_main


def _truth_by_class(out):
    """{class: Counter(concept)} read straight from the files and the tars."""
    fdir, ldir = ff.features_dir(out), ff.labels_dir(out)
    by = {}
    for n in ff.shard_names(fdir):
        concepts = shard_concepts(ff.read_record(fdir, n)["input"]["path"])
        for key, lab in zip(ff.read_shard_keys(fdir, n), ff.read_labels(ldir, n)):
            by.setdefault(int(lab), Counter())[concepts[key]] += 1
    return by


def test_classes_have_sizes_words_and_purity_from_the_ground_truth(client, serve_clusters):
    body = client.get("/clusters?sort=id").json()
    sizes = ff.read_class_sizes(ff.labels_dir(serve_clusters))
    assert body["total"] == 8 and body["ground_truth"] and [c["size"] for c in body["classes"]] == sizes.tolist()
    truth = _truth_by_class(serve_clusters)
    for c in body["classes"]:
        cnt = truth[c["id"]]
        assert c["purity"] == pytest.approx(max(cnt.values()) / sum(cnt.values()))
        assert c["truth"] in cnt and cnt[c["truth"]] == max(cnt.values())
        assert c["words"] and all(isinstance(w, str) for w in c["words"])
    by_size = [c["size"] for c in client.get("/clusters?sort=size").json()["classes"]]
    assert by_size == sorted(by_size, reverse=True)
    by_purity = [c["purity"] for c in client.get("/clusters?sort=purity").json()["classes"]]
    assert by_purity == sorted(by_purity)


def test_a_class_lists_its_members_whose_images_seed_a_search(client, serve_clusters):
    body = client.get("/clusters/3?limit=5").json()
    labels = np.concatenate([ff.read_labels(ff.labels_dir(serve_clusters), n)
                             for n in ff.shard_names(ff.features_dir(serve_clusters))])
    assert body["total"] == int((labels == 3).sum()) and len(body["members"]) == 5
    m = body["members"][0]
    assert m["label"] == 3 and m["caption"] and labels[m["member"]] == 3
    img = client.get(m["image_url"])
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    nb = client.get(f"/clusters/members/{m['member']}/neighbours?k=3").json()
    # the cluster features are the index's own: the member finds itself (same key) first
    assert nb["results"][0]["key"] == m["key"] and nb["results"][0]["score"] > 0.999


def test_serve_needs_an_index_or_clusters(capsys):
    assert serve_main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unicom-serve: error:") and "--index" in err[0]


def test_serve_reports_a_missing_index_and_a_busy_port_in_one_line(tmp_path, capsys):
    assert serve_main(["--index", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no index at" in err[0]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert serve_main(["--clusters", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port} is in use" in err[0]


def test_serve_refuses_another_encoder_than_the_index_s(serve_index, tmp_path, capsys):
    import torch

    from unicom.data.transforms import CLIP_MEAN, CLIP_STD
    from unicom.formats.export import save_export
    from unicom.models.vit import build_vit

    torch.manual_seed(5)
    save_export(build_vit("ViT-Tiny/8@32").eval(), tmp_path / "other", 32, CLIP_MEAN, CLIP_STD, 32)
    assert serve_main(["--index", str(serve_index), "--model", str(tmp_path / "other"), "--device", "cpu",
                       "--port", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "built with another encoder" in err[0]


def test_make_serve_defaults_to_what_make_demo_leaves(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("needs GNU make")
    root = Path(__file__).resolve().parents[3]

    def dry(*assign):
        out = subprocess.run(["make", "-n", "-C", str(root), "serve", f"STAMP={tmp_path / 'stamp'}", *assign],
                             capture_output=True, text=True, check=True).stdout.replace("\\\n", " ")
        return " ".join(next(ln for ln in out.splitlines() if "unicom.serve.cli" in ln).split())

    (tmp_path / "stamp").touch()
    assert "--index runs/demo/index" in dry() and "--port 8000" in dry()
    (tmp_path / "c" / "labels").mkdir(parents=True)
    (tmp_path / "c" / "labels" / "class_sizes.npy").touch()
    cmd = dry(f"CLUSTERS={tmp_path / 'c'}", "INDEX=runs/x", "PORT=9", "SERVE_ARGS=--device cpu")
    assert f"--index runs/x --clusters {tmp_path / 'c'} --port 9 --device cpu" in cmd
