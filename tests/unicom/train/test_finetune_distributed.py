"""(slow) A labelled source on 2 gloo ranks: rank 0 reads and checks the list, the ranks share
the global order, the position is saved once for all; the 2-rank run resumes on 1 rank."""
import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_ranks
from tests.unicom.train import fake_train_trees as trees
from unicom.train.cli import main as train_main
from unicom.train.run_log import read_log

ROOT = Path(__file__).resolve().parents[3]
TINY = str(ROOT / "configs" / "finetune" / "tiny.yaml")
WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, ".")
    from unicom.train.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_labelled_source_on_two_ranks_then_resumed_on_one(tmp_path):
    folder = trees.image_folder(tmp_path / "folder", classes=("a", "b", "c"), per_class=4)  # 12 images
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = ["--config", TINY, "--dataset", "image_folder", "--data-root", folder, "--output", tmp_path / "run",
            "--resume", "data.batch_size=2", "train.ckpt_every=3"]
    outs = run_ranks(script, args + ["train.max_steps=3"], world_size=2, timeout=600)
    assert "done: step 3" in outs[0]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_3" / "state.json").read_text())
    assert state["data"]["consumed"] == 12 and state["data"]["epoch"] == 1 and state["data"]["offset"] == 0
    assert state["data"]["world_size"] == 2 and len(state["ranks"]) == 2
    # resumed on one rank: the schedule keeps its length in samples, the order goes on at position 12
    assert train_main(list(map(str, args)) + ["train.max_steps=5"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["finished"] and not summary["resumed_exactly"] and summary["world_size"] == 1
    assert [r["step"] for r in read_log(tmp_path / "run")][:3] == [1, 2, 3]
