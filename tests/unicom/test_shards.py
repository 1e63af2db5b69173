
import pytest

from unicom.data.shards import expand_braces, expand_shards, shard_name, split_for_rank, unique_names


def test_brace_range_keeps_zero_padding():
    assert expand_braces("d/{00000..00003}.tar") == [f"d/0000{i}.tar" for i in range(4)]


def test_brace_list_nested_and_multiple_groups():
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("x{a,{b,c}}y") == ["xay", "xby", "xcy"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("{8..11}") == ["8", "9", "10", "11"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def _touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return str(p)


def test_expand_pattern_directory_and_list_file(tmp_path):
    paths = [_touch(tmp_path / "s" / f"{i:05d}.tar") for i in range(3)]
    _touch(tmp_path / "s" / "00000_stats.json")
    assert expand_shards(str(tmp_path / "s" / "{00000..00002}.tar")) == paths
    assert expand_shards(str(tmp_path / "s")) == paths  # the stats json is not a shard
    lst = tmp_path / "shards.txt"
    lst.write_text("# my shards\ns/00000.tar\n\ns/{00001..00002}.tar\n")
    assert expand_shards(str(lst)) == paths  # relative to the list file
    assert expand_shards([paths[0], paths[2]]) == [paths[0], paths[2]]


def test_missing_shard_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="00006.tar"):
        expand_shards(str(tmp_path / "{00006..00007}.tar"))


def test_remote_urls_pass_through():
    assert expand_shards("pipe:curl -s http://x/{0..1}.tar") == ["pipe:curl -s http://x/0.tar", "pipe:curl -s http://x/1.tar"]


def test_shard_name_and_rank_split():
    assert shard_name("/a/b/00012.tar") == "00012"
    items = list(range(7))
    parts = [split_for_rank(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    with pytest.raises(ValueError, match="share the name"):
        unique_names(["a/00001.tar", "b/00001.tar"])
