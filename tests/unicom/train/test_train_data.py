"""The training data pipeline: label join, skip counting, exact restore of the stream position."""
import itertools

import numpy as np
import pytest
import torch

from tests.unicom.train.support import write_concept_labels
from unicom.data.shards import expand_shards
from unicom.data.wds_reader import SkipCounter, Skipped, iter_raw, read_shard_samples
from unicom.train.data import (
    DataPosition,
    LabelIndex,
    SeededAugment,
    ShardPlan,
    TrainStream,
    make_loader,
    remap_position,
)


def _stream(shards, labels, num_streams=1, block=10_000, batch=8, workers=0, rank=0, cursors=None, phase=0,
            offset=0, seed=0):
    plan = ShardPlan(tuple(shards), seed, num_streams, offset)
    aug = SeededAugment(32, (0.5,) * 3, (0.25,) * 3, (0.3, 1.0))
    return TrainStream(plan, LabelIndex(labels), aug, batch, block, rank, workers, cursors, phase)


def test_corrupt_and_unlabelled_samples_are_skipped_and_counted(sample_set, tmp_path):
    root, manifest = sample_set
    shards = expand_shards(str(root / "shards"))
    first_keys = [r["__key__"] for r in itertools.islice(iter_raw([shards[0]]), 5)]
    labels = write_concept_labels(root / "shards", tmp_path, drop_keys=first_keys, skip_shards=["00001"])
    records = sum(1 for _ in iter_raw(shards))  # one pass, each shard's tail error counting as one record
    n_shard1 = sum(1 for r in iter_raw([shards[1]]) if not isinstance(r, Skipped))
    ds = _stream(shards, labels, block=records)
    counter, good = SkipCounter(), 0
    for item, _ in itertools.islice(ds.iter_stream(0, (0, 0, 0)), records):
        if isinstance(item, Skipped):
            counter.add(item)
        else:
            image, label = item
            assert image.shape == (3, 32, 32) and 0 <= label < 36
            good += 1
    expected = {"bad_image": 2, "missing_image": 1, "truncated_tar": 1, "no_label": len(first_keys) + n_shard1}
    assert counter.as_dict() == expected
    # every decodable sample with a label is used; the one without a caption too (not needed)
    readable = len(read_shard_samples(shards, need_caption=False))
    assert good == readable - len(first_keys) - n_shard1 >= manifest["num_train_samples"] - 150


def test_label_index_checks(toy_labels, tmp_path):
    shards, labels = toy_labels
    idx = LabelIndex(labels)
    assert idx.num_classes == 36 and idx.shard_labels("00000")
    assert idx.shard_labels("99999") is None
    with pytest.raises(FileNotFoundError, match="class_sizes"):
        LabelIndex(tmp_path)
    with pytest.raises(FileNotFoundError, match="none of the"):
        idx.check_shards([str(tmp_path / "77777.tar")])
    # misaligned labels and keys
    bad = tmp_path / "bad"
    (bad / "labels").mkdir(parents=True)
    (bad / "features").mkdir()
    np.save(bad / "labels" / "class_sizes.npy", np.ones(3, dtype=np.int64))
    np.save(bad / "labels" / "00000.npy", np.zeros(2, dtype=np.int32))
    (bad / "features" / "00000.keys").write_text("a\n")
    with pytest.raises(ValueError, match="align"):
        LabelIndex(bad / "labels").shard_labels("00000")
    np.save(bad / "labels" / "00000.npy", np.array([5], dtype=np.int32))
    with pytest.raises(ValueError, match="only 3 classes"):
        LabelIndex(bad / "labels").shard_labels("00000")


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_stream_restores_exactly_from_any_cursor(toy_labels):
    shards, labels = toy_labels
    shard_list = expand_shards(str(shards))
    ds = _stream(shard_list, labels, num_streams=2, block=40)
    ref = _take(ds.iter_stream(1, (0, 0, 0)), 130)  # crosses several blocks and shards
    for k in (0, 17, 39, 40, 101):
        cursor = ref[k][1]
        again = _take(ds.iter_stream(1, cursor), 20)
        for (a, ca), (b, cb) in zip(ref[k + 1:k + 21], again):
            assert ca == cb
            if isinstance(a, Skipped):
                assert a == b
            else:
                assert a[1] == b[1] and torch.equal(a[0], b[0])


def test_streams_split_the_shards_and_passes_reshuffle(toy_labels):
    shards, _ = toy_labels
    shard_list = tuple(expand_shards(str(shards)))
    plan = ShardPlan(shard_list, seed=3, num_streams=4)
    n = len(shard_list)
    first_pass = [plan.shard(s, i) for i in range(2) for s in range(4)][:n]
    assert sorted(first_pass) == sorted(shard_list)  # every shard once per pass, across streams
    second = [plan.shard(s % 4, s // 4) for s in range(n, 2 * n)]
    assert sorted(second) == sorted(shard_list)
    resampled = ShardPlan(shard_list, seed=3, num_streams=4, resampled=True)
    assert all(resampled.shard(1, i) in shard_list for i in range(20))


def test_loader_with_workers_resumes_in_the_same_batch_order(toy_labels):
    shards, labels = toy_labels
    shard_list = expand_shards(str(shards))
    plan = ShardPlan(tuple(shard_list), 0, 2)
    aug = SeededAugment(32, (0.5,) * 3, (0.25,) * 3)
    idx = LabelIndex(labels)
    pos = DataPosition(2, 2, 1)
    it = iter(make_loader(plan, idx, aug, 8, 32, 0, 2, pos))
    batches = _take(it, 9)
    del it
    # the position after 5 batches: last cursor of each stream, batches consumed
    cut = 5
    cursors = {}
    for b in batches[:cut]:
        cursors[b.stream] = b.cursor
    resumed = iter(make_loader(plan, idx, aug, 8, 32, 0, 2, DataPosition(2, 2, 1, batches=cut, cursors=cursors)))
    for b_ref in batches[cut:]:
        b = next(resumed)
        assert b.stream == b_ref.stream and b.cursor == b_ref.cursor
        assert torch.equal(b.labels, b_ref.labels) and torch.equal(b.images, b_ref.images)
    del resumed
    assert all(len(b.labels) == 8 for b in batches)


def test_remap_position_restarts_at_the_earliest_unfinished_shard():
    old = DataPosition(num_streams=4, num_workers=2, world_size=2, offset=0, batches=7,
                       cursors={0: (3, 10, 2), 1: (2, 0, 5), 2: (4, 1, 0), 3: (3, 7, 1)})
    new = remap_position(old, 2, 2, 1, resampled=False)
    assert (new.num_streams, new.world_size, new.batches, new.cursors) == (2, 1, 0, {})
    assert new.offset == 1 + 2 * 4  # stream 1 at its 3rd shard: global position 9
    assert remap_position(old, 4, 2, 2, False) is old
    assert remap_position(old, 2, 2, 1, True).generation == 1


def test_seeded_augment_is_a_function_of_the_generator():
    from PIL import Image

    img = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8))
    aug = SeededAugment(32, (0.5,) * 3, (0.25,) * 3)
    a = aug(img, np.random.default_rng([1, 2]))
    b = aug(img, np.random.default_rng([1, 2]))
    c = aug(img, np.random.default_rng([1, 3]))
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    for seed in range(50):  # crops stay inside the image
        top, left, h, w = aug.crop_params(64, 48, np.random.default_rng(seed))
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64
