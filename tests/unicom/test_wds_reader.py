
from tests.tar_files import write_tar
from unicom.data.shards import expand_shards
from unicom.data.wds_reader import Sample, SkipCounter, Skipped, iter_samples, read_shard_samples, split_skips


def test_bad_shard_skips_and_counts_each_reason(sample_set):
    root, manifest = sample_set
    bad = str(root / "shards" / manifest["bad_shard"])
    counter = SkipCounter()
    good = read_shard_samples([bad], counter, need_caption=True)
    expected = {}
    for reason in manifest["bad_samples"].values():
        expected[reason] = expected.get(reason, 0) + 1
    assert counter.as_dict() == expected == {"bad_image": 2, "missing_caption": 1, "missing_image": 1,
                                             "truncated_tar": 1}
    assert len(good) == 6 and all(isinstance(s, Sample) for s in good)
    assert not set(manifest["bad_samples"]) & {s.key for s in good}
    assert all(s.image.mode == "RGB" and s.caption for s in good)
    assert "total" in counter.report()


def test_caption_optional_when_not_needed(sample_set):
    root, manifest = sample_set
    bad = str(root / "shards" / manifest["bad_shard"])
    counter = SkipCounter()
    read_shard_samples([bad], counter, need_caption=False)
    assert "missing_caption" not in counter.as_dict()


def test_all_good_samples_read_in_order_with_metadata(sample_set):
    root, manifest = sample_set
    shards = expand_shards(str(root / "shards"))
    items = list(iter_samples(shards, decode=False))
    good, skips = split_skips(items)
    # Without decoding or a caption requirement only structural problems are skips.
    assert sorted(s.reason for s in skips) == ["missing_image", "truncated_tar"]
    assert len(good) == manifest["num_train_samples"] + 6 + 3
    first = good[0]
    assert first.shard == "00000" and isinstance(first.image, bytes)
    assert first.meta["concept"] in manifest["train_concepts"]


def test_counter_merges():
    a, b = SkipCounter(), SkipCounter()
    a.add(Skipped("bad_image", "00001", "k"))
    b.add("no_label", 3)
    a.update(b)
    a.update({"bad_image": 1})
    assert a.as_dict() == {"bad_image": 2, "no_label": 3} and a.total == 5
    assert a.all_reduce().as_dict() == a.as_dict()  # one process: unchanged


def _sample(key, caption):
    return [(f"{key}.txt", caption.encode()), (f"{key}.json", b"{}")]


def test_a_key_met_twice_in_a_shard_is_read_once_and_counted(tmp_path):
    """The second occurrence used to come out as a second sample (two labels at clustering, the
    last one in training); now every reader sees the first one and counts the other."""
    from unicom.data.wds_reader import iter_raw

    shard = tmp_path / "00000.tar"
    write_tar(shard, _sample("a", "first") + _sample("b", "b") + _sample("a", "second") + _sample("c", "c"))
    items = list(iter_raw([str(shard)]))
    raws = [r for r in items if not isinstance(r, Skipped)]
    assert [r["__key__"] for r in raws] == ["a", "b", "c"] and raws[0]["txt"] == b"first"
    skips = [r for r in items if isinstance(r, Skipped)]
    assert [(s.reason, s.shard, s.key) for s in skips] == [("duplicate_key", "00000", "a")]
    # the same key in another shard is another sample
    other = tmp_path / "00001.tar"
    write_tar(other, _sample("a", "other shard"))
    good, skips = split_skips(list(iter_samples([str(shard), str(other)], need_image=False)))
    assert [(s.shard, s.key) for s in good] == [("00000", "a"), ("00000", "b"), ("00000", "c"), ("00001", "a")]
    assert [s.reason for s in skips] == ["duplicate_key"]


def test_a_sample_repeated_right_after_itself_is_counted_not_a_broken_shard(tmp_path):
    """webdataset merges adjacent files with one key and reports each repeat as an error, which
    used to be counted as an unreadable shard."""
    shard = tmp_path / "00000.tar"
    write_tar(shard, _sample("a", "first") + _sample("a", "again") + _sample("a", "third") + _sample("b", "b"))
    counter = SkipCounter()
    good = read_shard_samples([str(shard)], counter, need_image=False, need_caption=True)
    assert [(s.key, s.caption) for s in good] == [("a", "first"), ("b", "b")]
    assert counter.as_dict() == {"duplicate_key": 2}
