"""A distractor cache that another ``unicom-eval --distractors`` job is building: the second job
waits for it (with a note), reuses it, or refuses in one line naming ``--distractor-cache``
before embedding anything."""
from __future__ import annotations

import threading
import time

import pytest

from retrieval_eval.distractors import cache_folder, load_distractors
from tests.retrieval_eval import fake_trees as fake
from unicom.cli.run_lock import lock_output_dir
from unicom.pretrained.load import load_encoder


def _hold(cache, seconds: float, started: threading.Event) -> None:
    with lock_output_dir(cache, "unicom-eval --distractors"):
        started.set()
        time.sleep(seconds)


def test_a_cache_in_use_is_waited_for_then_refused_naming_the_flag(tmp_path, tiny_export, caplog):
    enc = load_encoder(str(tiny_export), device="cpu")
    images = fake.image_folder(tmp_path / "distractors")
    kw = dict(precision="fp32", cache_root=tmp_path / "cache", batch_size=8)
    cache, _ = cache_folder(str(images), enc, "fp32", tmp_path / "cache")
    cache.mkdir(parents=True)
    with lock_output_dir(cache, "unicom-eval --distractors"):  # another job is building it
        with caplog.at_level("WARNING"), pytest.raises(ValueError) as info:
            load_distractors(str(images), enc, lock_wait_s=1.0, **kw)
    msg = str(info.value)
    assert "\n" not in msg and f"the distractor cache {cache} is still being built by another job" in msg
    assert "--distractor-cache" in msg and "waiting for the cache" in caplog.text
    assert not (cache / "features").exists()  # refused before any embedding

    # the other job finishes while this one waits: this one then reuses its cache
    first = load_distractors(str(images), enc, **kw)
    assert not first.reused_cache and len(first.features) == 6
    started = threading.Event()
    holder = threading.Thread(target=_hold, args=(cache, 1.0, started))
    holder.start()
    started.wait(10)
    try:
        second = load_distractors(str(images), enc, lock_wait_s=60.0, **kw)
    finally:
        holder.join()
    assert second.reused_cache and second.cache == first.cache and len(second.features) == 6
