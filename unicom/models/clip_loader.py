"""Create an open_clip model from local files only: ``create_clip(name, pretrained)``.

* ``pretrained`` is a local weights file (``.bin``/``.pt``/``.pth`` loaded with
  ``torch.load(weights_only=True)``, or ``.safetensors``), or ``"none"`` for a random model.
* ``model_name`` may be ``local-dir:/path`` (a folder holding ``open_clip_config.json`` and its
  weights, as saved by open_clip); the weights then come from that folder.
* Download tags (``openai``, ``laion2b_s34b_b79k`` …) and ``hf-hub:`` names are refused: this
  toolkit never reaches a model hub.
* A random model is built under a fixed seed (0) in a forked RNG, so every call gives the same
  weights (clustering and a later evaluation of "the raw CLIP features" see the same model) and
  the caller's global RNG state is untouched.

The tiny ``TinyCLIP-demo`` config (``open_clip_configs/TinyCLIP-demo.json``, shipped as package
data) is registered with open_clip on import; it is for the CPU demo and the tests.
"""
from __future__ import annotations

import inspect
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import torch

from ..pretrained.state_dict import refused_pickle_message

CONFIG_DIR = Path(__file__).with_name("open_clip_configs")
DEMO_MODEL = "TinyCLIP-demo"
RANDOM_INIT_SEED = 0
_NONE = ("none",)

_registered = False


def register_configs() -> None:
    """Register the toolkit's own open_clip configs (``TinyCLIP-demo``) once per process."""
    global _registered
    if _registered:
        return
    import open_clip

    if DEMO_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
    _registered = True


def _is_none(pretrained: Optional[str]) -> bool:
    return pretrained is not None and str(pretrained).strip().lower() in _NONE


def _download_tag_error(model_name: str, pretrained: str) -> ValueError:
    return ValueError(
        f"pretrained={pretrained!r} for {model_name!r} is an open_clip download tag; this toolkit "
        "never downloads weights. Download the file yourself and pass its local path, e.g. "
        f"--pretrained /weights/open_clip_pytorch_model.bin (or --pretrained none for a random model)")


def load_state_dict_safely(path: Union[str, os.PathLike]) -> dict:
    """Read a CLIP state dict without unpickling arbitrary objects: safetensors, or
    ``torch.load(weights_only=True)``. Unwraps ``{"state_dict": ...}`` and a ``module.`` prefix."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path, device="cpu")
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exn:
            raise ValueError(refused_pickle_message(path, exn)) from exn
        except Exception as exn:
            raise ValueError(f"could not load {path} as a plain state dict (TorchScript archives are refused; "
                             f"truncated or corrupt?): {type(exn).__name__}: {str(exn)[:300]}") from exn
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path} does not hold a state dict")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _open_clip_accepts(arg: str) -> bool:
    import open_clip

    return arg in inspect.signature(open_clip.create_model_and_transforms).parameters


def _open_clip_loads_safely() -> bool:
    return _open_clip_accepts("weights_only")


def _create(model_name: str, pretrained: Optional[str], precision: str, load_weights: bool = True):
    import open_clip

    kwargs: dict = dict(pretrained=pretrained, precision=precision, device="cpu")
    if _open_clip_loads_safely():
        kwargs["weights_only"] = True
    if not load_weights:
        if not _open_clip_accepts("load_weights"):
            if model_name.startswith("local-dir:"):
                raise RuntimeError("this open_clip version cannot build a local-dir model without its weights; "
                                   "upgrade open_clip_torch")
        else:
            kwargs["load_weights"] = False
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, **kwargs)
    return model, preprocess


def create_clip(model_name: str, pretrained: Optional[str], device: Union[str, torch.device] = "cpu",
                precision: str = "fp32") -> Tuple[torch.nn.Module, Callable, Callable]:
    """Return ``(model, preprocess, tokenizer)`` for an open_clip model, in eval mode on ``device``.

    ``preprocess`` is the model's eval transform (PIL image → tensor); ``tokenizer`` is
    ``open_clip.get_tokenizer(model_name)`` (list of str → LongTensor [n, context]).
    ``precision`` is open_clip's (``fp32``, ``fp16``, ``bf16``, ``pure_fp16`` …); mixed precision
    for inference is better done with autocast over fp32 weights.
    """
    import open_clip

    register_configs()
    name = str(model_name).strip()
    pre = None if pretrained is None else str(pretrained).strip()
    if name.startswith("hf-hub:"):
        raise ValueError(f"{name!r} would download from the Hugging Face hub; this toolkit never does. "
                         "Save the model to a folder and pass 'local-dir:/that/folder'")
    random_init = _is_none(pre)
    if name.startswith("local-dir:"):
        folder = name[len("local-dir:"):]
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"local-dir model folder not found: {folder}")
        if pre and not random_init and os.path.abspath(pre) != os.path.abspath(folder):
            raise ValueError(f"{name!r} takes its weights from its folder; pass --pretrained '' (or "
                             f"'none' for a random model), not {pre!r}")
        pre = None
    else:
        if open_clip.get_model_config(name.replace("/", "-")) is None:
            raise ValueError(f"unknown open_clip model {name!r}; known models include "
                             f"{', '.join(open_clip.list_models()[:8])} … and {DEMO_MODEL}")
        if not pre:
            raise ValueError(f"no weights given for {name!r}: pass a local weights file with "
                             "--pretrained /path/to/open_clip_pytorch_model.bin, or --pretrained none "
                             "to ask explicitly for a random model")
        if not random_init and not os.path.isfile(pre):
            tags = open_clip.list_pretrained_tags_by_model(name.replace("/", "-"))
            if pre in tags or pre.lower() in (t.lower() for t in tags) or pre.lower() in ("openai",):
                raise _download_tag_error(name, pre)
            raise FileNotFoundError(f"weights file not found: {pre} (give a local file path, or "
                                    "'none' for a random model)")

    if random_init:
        # Same weights on every call and every rank, without touching the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model, preprocess = _create(name, None, precision, load_weights=False)
        logging.getLogger(__name__).warning(
            "open_clip model %s: random init (seed %d), as asked by pretrained='none'", name, RANDOM_INIT_SEED)
    elif pre is None:  # local-dir with its own weights: open_clip reads the folder
        if not _open_clip_loads_safely():
            raise RuntimeError("this open_clip version cannot load weights with weights_only=True; "
                               "upgrade open_clip_torch to use local-dir: models")
        model, preprocess = _create(name, None, precision)
    elif _open_clip_loads_safely() or pre.endswith(".safetensors"):
        try:
            model, preprocess = _create(name, pre, precision)
        except pickle.UnpicklingError as exn:  # torch's own text would suggest unpickling the file
            raise ValueError(refused_pickle_message(pre, exn)) from None
    else:  # old open_clip: build the architecture and load the weights ourselves, safely
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model, preprocess = _create(name, None, precision, load_weights=False)
        sd = load_state_dict_safely(pre)
        model.load_state_dict(sd, strict=True)
    tokenizer = open_clip.get_tokenizer(name)
    model = model.to(device).eval()
    return model, preprocess, tokenizer


def model_dims(model: torch.nn.Module) -> dict:
    """Small facts about an open_clip model: image size and the joint embedding dimension."""
    visual: Any = getattr(model, "visual", None)
    size = getattr(visual, "image_size", None)
    if isinstance(size, (tuple, list)):
        size = int(size[0])
    embed = getattr(visual, "output_dim", None)
    if embed is None and getattr(model, "text_projection", None) is not None:
        tp = model.text_projection
        embed = tp.shape[1] if hasattr(tp, "shape") else tp.out_features
    return {"image_size": size, "embed_dim": embed}
