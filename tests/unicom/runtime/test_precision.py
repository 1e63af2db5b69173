"""``--precision auto``: what it resolves to on each device, the fallback on a CPU without bf16,
and that bf16 autocast embeddings agree with float32 on the demo encoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unicom.data.transforms import eval_transform
from unicom.models.encoders import module_encoder
from unicom.models.inference import encode_batch, inference_autocast
from unicom.models.vit import build_vit
from unicom.runtime import precision as prec
from unicom.runtime.device import autocast, autocast_dtype
from unicom.train.precision import autocast_context, needs_loss_scaling

DEMO_VIT = {"image_size": 64, "patch_size": 16, "width": 192, "depth": 4, "heads": 3, "embed_dim": 128}  # demo.yaml


def _no_bf16(monkeypatch):
    """Simulate a CPU without native bf16: torch's capability query answers False."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)


def test_auto_is_the_default_spelling_everywhere():
    from clustering.config import ExtractConfig
    from retrieval_eval.options import EvalOptions
    from unicom.train.config import TrainConfig

    assert prec.DEFAULT_PRECISION == "auto" and "auto" in prec.PRECISIONS
    assert ExtractConfig().precision == TrainConfig().precision == "auto"
    assert EvalOptions.__dataclass_fields__["precision"].default == "auto"


def test_auto_on_a_cpu_without_bf16_is_fp32(monkeypatch):
    _no_bf16(monkeypatch)
    assert not prec.cpu_has_native_bf16()
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    assert autocast_dtype(torch.device("cpu"), "auto") is None
    lin = torch.nn.Linear(4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16), autocast(torch.device("cpu"), "auto"):
        assert lin(torch.randn(1, 4)).dtype == torch.float32  # fp32 even inside an outer autocast
    # an explicit bf16 is honoured (emulated), fp16 never runs on the CPU
    assert prec.resolve_precision("bf16", "cpu") == "bf16"
    assert prec.resolve_precision("fp16", "cpu") == "fp32"


def test_auto_on_a_cpu_with_bf16_is_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert prec.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert autocast_dtype(torch.device("cpu"), "auto") is torch.bfloat16
    assert prec.resolve_precision("fp32", "cpu") == "fp32"
    assert not needs_loss_scaling(torch.device("cpu"), "fp16")


def test_cuda_choices_without_a_gpu(monkeypatch):
    monkeypatch.setattr(prec, "cuda_has_bf16", lambda device=None: False)
    assert prec.resolve_precision("auto", "cuda:0") == "fp16"
    monkeypatch.setattr(prec, "cuda_has_bf16", lambda device=None: True)
    assert prec.resolve_precision("auto", "cuda") == "bf16"
    assert prec.resolve_precision("fp16", "cuda") == "fp16"
    assert needs_loss_scaling(torch.device("cuda"), "fp16")


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown precision 'int8'.*auto, bf16, fp16, fp32"):
        prec.resolve_precision("int8", "cpu")


def test_the_choice_is_announced_once(monkeypatch, capsys):
    _no_bf16(monkeypatch)
    monkeypatch.setattr(prec, "_announced", set())
    for _ in range(3):
        assert prec.announce_precision("auto", torch.device("cpu"), "encoder") == "fp32"
    err = capsys.readouterr().err
    assert err.count("precision auto → fp32 for the encoder on cpu") == 1 and "no native bf16" in err


def test_training_autocast_covers_the_backbone_only(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    lin = torch.nn.Linear(8, 4)
    with autocast_context(torch.device("cpu"), "auto"):
        assert lin(torch.randn(2, 8)).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "fp32"):
        assert lin(torch.randn(2, 8)).dtype == torch.float32


@pytest.mark.skipif(not prec.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_and_fp32_embeddings_agree_on_the_demo_encoder():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_vit(DEMO_VIT).eval()
        images = torch.randn(16, 3, 64, 64)
    enc = module_encoder(model, eval_transform(64), device="cpu")
    fp32 = encode_batch(enc, images, "fp32")
    bf16 = encode_batch(enc, images, "auto")
    assert fp32.dtype == bf16.dtype == np.float32
    cos = (fp32 * bf16).sum(1)  # both L2-normalised
    assert cos.min() >= 0.999, cos.min()
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    np.testing.assert_array_equal(bf16, encode_batch(enc, images, "auto"))  # deterministic run to run
    with inference_autocast(enc, "auto"):  # weights cast once for the loop: the same numbers
        for _ in range(2):
            np.testing.assert_array_equal(bf16, encode_batch(enc, images, "auto"))
