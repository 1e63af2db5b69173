"""The restricted unpickler: data-only pickles load, anything callable is refused."""
from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pytest

from retrieval_eval import safe_pickle
from retrieval_eval.safe_pickle import UnsafePickleError

GND = {"imlist": ["all_souls_000001", "ashmolean_000000"], "qimlist": ["all_souls_000013"],
       "gnd": [{"bbx": [136.5, 34.1, 648.5, 955.7], "easy": np.array([0]), "hard": [1],
                "junk": np.array([], dtype=np.int64)}],
       "extra": (1, 2.5, None, True, {3, 4}, frozenset([5]), b"raw", np.float32(1.5), np.zeros((2, 3), np.float16))}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_data_pickles_load(protocol, tmp_path):
    path = tmp_path / "gnd.pkl"
    path.write_bytes(pickle.dumps(GND, protocol=protocol))
    out = safe_pickle.load(path)
    assert out["imlist"] == GND["imlist"]
    assert out["gnd"][0]["easy"].tolist() == [0] and out["gnd"][0]["hard"] == [1]
    assert out["extra"][4] == {3, 4} and out["extra"][6] == b"raw"
    assert out["extra"][8].dtype == np.float16 and out["extra"][8].shape == (2, 3)


class CallsSystem:
    def __reduce__(self):
        return os.system, ("echo should-not-run > /dev/null",)


class CallsSubprocess:
    def __reduce__(self):
        return subprocess.check_output, (["true"],)


class PlainObject:
    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("payload", [CallsSystem(), CallsSubprocess(), PlainObject(), {"gnd": [CallsSystem()]},
                                     eval, np.array([os.system], dtype=object)])
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_callables_and_objects_are_refused(payload, protocol):
    with pytest.raises(UnsafePickleError, match="refusing"):
        safe_pickle.loads(pickle.dumps(payload, protocol=protocol))


def test_os_system_is_never_called(tmp_path):
    marker = tmp_path / "ran"

    class Touch:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(UnsafePickleError, match="posix.system|nt.system|os.system"):
        safe_pickle.loads(pickle.dumps(Touch()))
    assert not marker.exists()


def test_refused_pickle_is_refused_by_the_revisitop_loader(tmp_path):
    from retrieval_eval.loaders import load_benchmark

    d = tmp_path / "roxford5k"
    d.mkdir()
    (d / "gnd_roxford5k.pkl").write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [CallsSystem()]}))
    from retrieval_eval.loaders.revisitop import GroundTruthError

    with pytest.raises(GroundTruthError, match="gnd_roxford5k.pkl: refused") as info:
        load_benchmark("roxford5k", tmp_path)
    assert isinstance(info.value.__cause__, UnsafePickleError)
