"""Create an open_clip model as open_clip does: ``create_clip(name, pretrained)``.

* ``pretrained`` is an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k`` …), an
  ``hf-hub:ORG/NAME`` repository holding ``open_clip_pytorch_model.bin`` (or a
  ``hf-hub:ORG/NAME/FILE``), a local weights file (``.bin``/``.pt``/``.pth`` loaded with
  ``torch.load(weights_only=True)``, or ``.safetensors``), or ``"none"`` for a random model.
* ``model_name`` may be ``hf-hub:ORG/NAME`` (config and weights from that repository) or
  ``local-dir:/path`` (a folder holding ``open_clip_config.json`` and its weights, as saved by
  open_clip); as in open_clip, ``pretrained`` is then ignored, except ``none``.
* Tags and hub names are fetched by open_clip through ``huggingface_hub`` on first use and kept
  in the Hugging Face cache (``$HF_HOME``/``$HF_HUB_CACHE``); with ``HF_HUB_OFFLINE=1`` they are
  read from that cache alone, and a missing file is a clear error.
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


def _resolve_remote_weights(model_name: str, pretrained: str) -> str:
    """A pretrained tag stays a tag (open_clip applies its settings, e.g. quick_gelu for OpenAI's
    weights); ``hf-hub:ORG/NAME[/FILE]`` becomes the cached file's path. Anything else is an
    error listing the model's tags."""
    import open_clip

    if pretrained.startswith("hf-hub:"):
        from open_clip.pretrained import download_pretrained_from_hf

        parts = pretrained[len("hf-hub:"):].strip("/").split("/")
        if len(parts) < 2:
            raise ValueError(f"{pretrained!r}: write hf-hub:ORG/NAME or hf-hub:ORG/NAME/FILE")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
        return _fetching(lambda: download_pretrained_from_hf(repo, filename=filename), model_name, pretrained)
    tags = open_clip.list_pretrained_tags_by_model(model_name.replace("/", "-"))
    match = next((t for t in tags if t.lower() == pretrained.lower()), None)
    if match is None:
        raise FileNotFoundError(f"weights {pretrained!r} for {model_name!r}: not a file, and not one of its "
                                f"open_clip pretrained tags ({', '.join(tags) or 'none'}); give a tag, an "
                                "hf-hub:ORG/NAME, a local file, or 'none' for a random model")
    return match


def _fetching(fetch, model_name: str, pretrained: Optional[str]):
    """Run ``fetch`` (which may download into the Hugging Face cache) and turn a failure into
    one clear error naming the weights and the cache."""
    try:
        return fetch()
    except (OSError, RuntimeError, ValueError) as exn:
        from huggingface_hub import constants

        offline = " (HF_HUB_OFFLINE is set: only the cache is read)" if constants.HF_HUB_OFFLINE else ""
        what = f"{model_name} / {pretrained}" if pretrained else model_name
        raise ValueError(f"could not load the open_clip weights {what} (Hugging Face cache "
                         f"{constants.HF_HUB_CACHE}, or the hub{offline}): {type(exn).__name__}: "
                         f"{str(exn).splitlines()[0][:200] if str(exn) else ''}") from exn


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
    random_init = _is_none(pre)
    if name.startswith(("hf-hub:", "local-dir:")):
        folder = name[len("local-dir:"):] if name.startswith("local-dir:") else None
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"local-dir model folder not found: {folder}")
        if pre and not random_init:  # open_clip's rule: a schema model brings its own weights
            logging.getLogger(__name__).info("%s brings its own weights; pretrained=%r is ignored", name, pre)
        pre = None
    else:
        if open_clip.get_model_config(name.replace("/", "-")) is None:
            raise ValueError(f"unknown open_clip model {name!r}; known models include "
                             f"{', '.join(open_clip.list_models()[:8])} … and {DEMO_MODEL}")
        if not pre:
            raise ValueError(f"no weights given for {name!r}: pass an open_clip pretrained tag (e.g. "
                             f"--clip-pretrained openai), an hf-hub:ORG/NAME, a local weights file, or "
                             "--clip-pretrained none to ask explicitly for a random model")
        if not random_init and not os.path.isfile(pre):
            pre = _resolve_remote_weights(name, pre)
    if random_init:
        # Same weights on every call and every rank, without touching the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model, preprocess = _create(name, None, precision, load_weights=False)
        logging.getLogger(__name__).warning(
            "open_clip model %s: random init (seed %d), as asked by pretrained='none'", name, RANDOM_INIT_SEED)
    elif pre is None or not os.path.isfile(pre):  # a schema model or a pretrained tag: open_clip fetches it
        if not _open_clip_loads_safely():
            raise RuntimeError("this open_clip version cannot load weights with weights_only=True; upgrade "
                               "open_clip_torch to use hf-hub:, local-dir: models and pretrained tags")
        model, preprocess = _fetching(lambda: _create(name, pre, precision), name, pre)
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
