import hashlib
import tarfile

from unicom.sample_data import all_concepts, generate_sample_set


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_from_seed(tmp_path):
    kw = dict(per_concept=2, heldout_per_concept=2, shard_size=40, image_size=32)
    generate_sample_set(str(tmp_path / "a"), seed=3, **kw)
    generate_sample_set(str(tmp_path / "b"), seed=3, **kw)
    generate_sample_set(str(tmp_path / "c"), seed=4, **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_layout_matches_img2dataset(sample_set):
    root, manifest = sample_set
    train, held = all_concepts()
    assert not {c.name for c in train} & {c.name for c in held}
    first = root / "shards" / "00000.tar"
    assert (root / "shards" / "00000_stats.json").is_file()
    with tarfile.open(first) as tar:
        names = tar.getnames()[:3]
    key = names[0].split(".")[0]
    assert names == [f"{key}.jpg", f"{key}.txt", f"{key}.json"]
    held_dirs = sorted(p.name for p in (root / "heldout").iterdir())
    assert len(held_dirs) == len(held) == len(manifest["heldout_concepts"])
