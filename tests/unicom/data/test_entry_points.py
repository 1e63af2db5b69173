"""Every reader of the toolkit decodes through the one policy (``unicom.data.decode``).

Each entry point below is fed the same two real-photo files, a transparent cut-out PNG and an
EXIF-6 JPEG (``real_images``), under a non-default background (blue), and must produce the
pixels (or, where only embeddings come out, the embeddings) of the policy's reference: the
cut-out composited onto blue, the JPEG turned upright. The datasets are built inside the
policy's block and read after it, so the policy travels with them (into worker processes too).
A static check then makes sure no module opens an image file by another path.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tar_files import write_tar
from unicom.data.decode import DecodePolicy, using_policy

from . import real_images as ri
from .real_images import PoolEncoder, pool_encoder

ROOT = Path(__file__).resolve().parents[3]
BLUE = (0, 0, 255)
POLICY = DecodePolicy(background=BLUE)


# --------------------------------------------------------------------------------------------
# the two inputs and what the policy must make of them (computed independently here)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rgba, _ = ri.cutout("stripes")
    png = ri.save(rgba, d / "a_cutout.png", "PNG")
    jpg = ri.with_orientation(ri.astronaut().resize((200, 164)), d / "b_exif6.jpg", "JPEG")
    a = np.asarray(rgba).astype(np.float64)
    alpha = a[..., 3:4]
    blue = np.rint(alpha / 255 * a[..., :3] + np.asarray(BLUE) * (255 - alpha) / 255).astype(np.uint8)
    with Image.open(jpg) as stored:
        upright = np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    for p in (png, jpg):
        p.with_suffix(".txt").write_text("a caption")
    write_tar(d / "00000.tar", [("a.png", png.read_bytes()), ("a.txt", b"a caption"), ("a.json", b'{"label": "x"}'),
                                ("b.jpg", jpg.read_bytes()), ("b.txt", b"a caption"), ("b.json", b'{"label": "y"}')])
    (d / "list.csv").write_text(f"path,label,split\n{png.name},x,test\n{jpg.name},y,test\n")
    (d / "images.list").write_text(f"{png.name}\n{jpg.name}\n")
    folder = d / "folder"
    folder.mkdir()
    for p in (png, jpg):
        (folder / p.name).write_bytes(p.read_bytes())
    return {"dir": d, "paths": [png, jpg], "want": [blue, upright], "tar": d / "00000.tar", "folder": folder}


def pixels(img) -> torch.Tensor:
    """The probe transform: the decoded image as it reached the transform, uint8 [H, W, 3]."""
    return torch.from_numpy(np.asarray(img).copy())


def augment_probe(img, rng) -> torch.Tensor:
    return pixels(img)


def pool(arrays: List[np.ndarray]) -> np.ndarray:
    x = torch.stack([torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255 for a in arrays])
    e = PoolEncoder()(x).numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def encoder():
    return pool_encoder()


# --------------------------------------------------------------------------------------------
# the entry points: each returns the two decoded images (uint8 arrays) or their embeddings
# --------------------------------------------------------------------------------------------
def shard_members(f, _enc):
    from unicom.data.wds_reader import iter_samples

    with using_policy(POLICY):
        it = iter_samples([str(f["tar"])])
        return [np.asarray(s.image) for s in it]


def trainer_shards(f, _enc):
    from unicom.train.data import ShardPlan, TrainStream
    from unicom.train.json_labels import JsonLabels

    with using_policy(POLICY):
        labels = JsonLabels.scan([str(f["tar"])], "label")
        stream = TrainStream(ShardPlan((str(f["tar"]),), 0, 1), labels, augment_probe, 1, 1, 0, 0)
    out = {}
    for item, _ in stream.iter_stream(0, (0, 0, 0)):
        out[item[1]] = item[0].numpy()
        if len(out) == 2:
            return [out[0], out[1]]


def trainer_csv(f, _enc):
    from unicom.datasets import read_train_split
    from unicom.train.labelled import LabelledDataset, check_labelled

    csv = f["dir"] / "train.csv"
    csv.write_text(f"{f['paths'][0].name},x\n{f['paths'][1].name},y\n")
    images = check_labelled(read_train_split("csv", csv), integer_labels=True)
    with using_policy(POLICY):
        ds = LabelledDataset(images, augment_probe, 0)
    return [ds[(i, i, 2)][0].numpy() for i in range(2)]


def embed_folder(f, _enc):
    from unicom.embed.dataset import ImageFileDataset, list_folder

    with using_policy(POLICY):
        ds = ImageFileDataset(list_folder(f["folder"]), pixels)
    return [ds[i][0].numpy() for i in range(2)]


def embed_list_file(f, _enc):
    from unicom.embed.dataset import ImageFileDataset, read_image_list

    with using_policy(POLICY):
        ds = ImageFileDataset(read_image_list(f["dir"] / "images.list"), pixels)
    return [ds[i][0].numpy() for i in range(2)]


def embed_shards(f, _enc):
    from unicom.embed.dataset import ShardBatches

    with using_policy(POLICY):
        ds = ShardBatches([str(f["tar"])], pixels, 2)
    batch = next(iter(ds))
    return [batch.images[i].numpy() for i in range(2)]


def cluster_shards(f, _enc):
    from clustering.dataset import Item, ShardSampleDataset

    with using_policy(POLICY):
        ds = ShardSampleDataset([str(f["tar"])], pixels, None, need_caption=False)
    return [it.image.numpy() for it in ds if isinstance(it, Item)]


def cluster_folder(f, _enc):
    from clustering.dataset import FileSampleDataset, Item
    from unicom.embed.dataset import list_folder

    with using_policy(POLICY):
        ds = FileSampleDataset([list_folder(f["folder"])], pixels, None, need_caption=False)
    return [it.image.numpy() for it in ds if isinstance(it, Item)]


def demo_clip_pairs(f, _enc):
    from unicom.demo.clip_pretrain import load_pairs

    with using_policy(POLICY):
        images, _, _ = load_pairs([str(f["tar"])], pixels, lambda caps: torch.zeros(len(caps), 4, dtype=torch.long))
    return [images[i].numpy() for i in range(2)]


def benchmark_csv(f, enc):
    """unicom-eval on a CSV benchmark (retrieval_eval.loaders → unicom.datasets → embed_images)."""
    from retrieval_eval.options import EvalOptions
    from retrieval_eval.pipeline import run_evaluation

    opts = EvalOptions(background="#0000ff", workers=0, progress=False, batch_size=4)
    ev = run_evaluation(enc, "csv", f["dir"] / "list.csv", options=opts)
    assert ev.results["settings"]["decode"] == POLICY.record()
    return ev.embeddings / np.linalg.norm(ev.embeddings, axis=1, keepdims=True)  # evaluation keeps them raw


def embed_and_search(f, enc, tmp=None):
    """unicom-embed (features + index) and unicom-search's queries, which take the index's policy."""
    from unicom.embed import embed_to_features
    from unicom.embed.index import build_index_dir
    from unicom.embed.search import Searcher
    from unicom.formats import features as ff

    out = f["dir"] / "embedded"
    with using_policy(POLICY):
        res = embed_to_features(enc, str(f["folder"]), out, workers=0, progress=False)
    feats, _ = ff.read_shard(res.features_dir, "images")
    assert ff.read_meta(res.features_dir)["decode"] == POLICY.record()
    assert ff.read_record(res.features_dir, "images")["decode"] == POLICY.record()
    index = build_index_dir(res.features_dir, out / "index", "flat")
    assert json.loads((index / "index.json").read_text())["decode"] == POLICY.record()
    queries = Searcher(index, model=enc, progress=False).embed(f["paths"])  # default policy here: white
    return [np.asarray(feats, np.float32), queries]


def distractor_images(f, enc):
    from retrieval_eval.distractors import load_distractors

    with using_policy(POLICY):
        d = load_distractors(str(f["folder"]), enc, precision="fp32", cache_root=f["dir"] / "cache", workers=0)
    return d.features


PIXEL_READERS: Dict[str, Callable] = {
    "shard members (unicom.data.wds_reader)": shard_members,
    "trainer, shards (unicom.train.data.TrainStream)": trainer_shards,
    "trainer, CSV / labelled lists (unicom.train.labelled.LabelledDataset)": trainer_csv,
    "unicom-embed, folder (unicom.embed.dataset.ImageFileDataset)": embed_folder,
    "unicom-embed, list file (unicom.embed.dataset.ImageFileDataset)": embed_list_file,
    "unicom-embed, shards (unicom.embed.dataset.ShardBatches)": embed_shards,
    "clustering extraction, shards (clustering.dataset.ShardSampleDataset)": cluster_shards,
    "clustering extraction, folder (clustering.dataset.FileSampleDataset)": cluster_folder,
    "demo CLIP pre-training (unicom.demo.clip_pretrain.load_pairs)": demo_clip_pairs,
}


@pytest.mark.parametrize("name", list(PIXEL_READERS))
def test_reader_decodes_through_the_policy(files, name):
    got = PIXEL_READERS[name](files, None)
    assert len(got) == 2
    for g, want in zip(got, files["want"]):
        assert np.array_equal(np.asarray(g), want), name


def test_benchmark_embeds_through_the_policy(files, encoder):
    np.testing.assert_allclose(benchmark_csv(files, encoder), pool(files["want"]), atol=1e-5)


def test_unicom_embed_and_search_decode_through_the_policy(files, encoder):
    feats, queries = embed_and_search(files, encoder)
    want = pool(files["want"])
    np.testing.assert_allclose(feats, want, atol=2e-3)          # stored as float16
    np.testing.assert_allclose(queries, want, atol=1e-5)         # queries decoded like the collection (blue)


def test_distractors_decode_through_the_policy(files, encoder):
    np.testing.assert_allclose(distractor_images(files, encoder), pool(files["want"]), atol=2e-3)


def test_no_module_opens_images_another_way():
    """Only ``unicom/data/decode.py`` calls ``Image.open``; a ``convert("RGB")`` elsewhere is on an
    image the toolkit drew itself (a matplotlib canvas, the synthetic digits)."""
    allowed_convert = {"clustering/class_grid.py", "retrieval_eval/loaders/digits.py"}
    offenders = []
    for pkg in ("unicom", "clustering", "retrieval_eval"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr == "open" and isinstance(node.func.value, ast.Name) and node.func.value.id == "Image":
                    if rel != "unicom/data/decode.py":
                        offenders.append(f"{rel}:{node.lineno} Image.open")
                if node.func.attr == "convert" and rel not in allowed_convert and rel != "unicom/data/decode.py":
                    offenders.append(f"{rel}:{node.lineno} .convert(...)")
    assert offenders == []
