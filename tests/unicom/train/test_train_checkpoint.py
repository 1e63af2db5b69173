"""Checkpoint helpers: JSON encoding of RNG states, `latest`, and the fp16 loss scaler."""
import random

import numpy as np
import pytest
import torch

from unicom.train import checkpoint as ckpt
from unicom.train.precision import LossScaler


def test_tensors_and_arrays_round_trip_through_json():
    import json

    obj = {"a": torch.arange(6, dtype=torch.int64).reshape(2, 3), "b": torch.tensor(3.5),
           "c": torch.randn(4, dtype=torch.float16), "d": np.arange(5, dtype=np.uint32), "e": [1, (2, 3)],
           "f": torch.empty(0), "g": torch.get_rng_state()}
    back = ckpt.from_jsonable(json.loads(json.dumps(ckpt.to_jsonable(obj))))
    for k in ("a", "b", "c", "f", "g"):
        assert back[k].dtype == obj[k].dtype and torch.equal(back[k], obj[k])
    assert np.array_equal(back["d"], obj["d"]) and back["d"].dtype == np.uint32
    assert back["e"] == [1, [2, 3]]


def test_rng_states_are_restored():
    state = ckpt.capture_rng(torch.device("cpu"))
    a = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(123)
    np.random.seed(5)
    torch.manual_seed(7)
    ckpt.restore_rng(state, torch.device("cpu"))
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_latest_must_name_a_complete_step(tmp_path):
    assert ckpt.find_latest(tmp_path) is None
    root = tmp_path / "checkpoints"
    (root / "step_5").mkdir(parents=True)
    (root / "latest").write_text("step_5\n")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ckpt.find_latest(tmp_path)
    (root / "step_5" / "state.json").write_text("{}")
    assert ckpt.find_latest(tmp_path) == root / "step_5"
    (root / "step_12").mkdir()
    assert ckpt.list_steps(tmp_path) == [5, 12]


def test_loss_scaler_backs_off_and_grows():
    s = LossScaler(True, init_scale=1024.0, growth_interval=2)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 2048.0)
    s.unscale_([p])
    assert torch.equal(p.grad, torch.full((2,), 2.0))
    s.update(found_inf=True)
    assert s.scale == 512.0
    s.update(False)
    s.update(False)
    assert s.scale == 1024.0
    restored = LossScaler(True)
    restored.load_state_dict(s.state_dict())
    assert restored.scale == 1024.0 and restored.good_steps == 0
    off = LossScaler(False)
    assert off.scale == 1.0 and float(off.scale_loss(torch.tensor(3.0))) == 3.0
