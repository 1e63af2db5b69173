"""``unicom-export``: an encoder → an ONNX graph or a TorchScript module, with its preprocessing
and a parity check, for onnxruntime, TensorRT, Triton or LibTorch.

  unicom-export --model ViT-B/32 --output runs/b32-onnx
  unicom-export --model runs/demo/train/export --format torchscript --output runs/demo-ts
  unicom-export --model ViT-B/32 --dims 128 --pca-fit photos/ --output runs/b32-pca128
  unicom-embed --model runs/b32-onnx --data photos/ --output runs/photos      # runs it with onnxruntime

The folder holds the graph, preprocess.json (how an image becomes the input), parity.json (the
graph against PyTorch on a fixed batch) and deploy.json (the record, with the graph's SHA-256).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from ..cli.flags import HelpFormatter, fail
from .options import ExportOptions

PROG = "unicom-export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    add_dataclass_arguments(p, ExportOptions)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..cli.run_lock import run_locked

    opts = dataclass_from_namespace(ExportOptions, build_parser().parse_args(argv))
    assert opts.output is not None and opts.model is not None  # required flags
    from ..cli.log_setup import setup_logging

    setup_logging(PROG, opts.log_level)
    return run_locked(PROG, opts.output, lambda: _main(opts))  # one job per output folder


def _main(opts: ExportOptions) -> int:
    from ..formats.atomic_io import OutputWriteError
    from .export import export_model
    from .graph import ExportError
    from .parity import ParityError

    assert opts.output is not None
    try:
        res = export_model(opts.model, opts.output, opts.format, image_size=opts.image_size, heads=opts.heads,
                           fp16=opts.fp16, normalize=opts.normalize, dims=opts.dims, pca_fit=opts.pca_fit,
                           parity_data=opts.parity_data, parity_images=opts.parity_images,
                           min_cosine=opts.min_cosine, opset=opts.opset, batch_size=opts.batch_size,
                           workers=opts.workers, progress=opts.progress)
    except ParityError as exn:
        return fail(PROG, f"error: {exn}", code=1)
    except (FileNotFoundError, ValueError, ImportError, ExportError, OutputWriteError, RuntimeError) as exn:
        return fail(PROG, f"error: {exn}")
    rec = res.record
    dims = rec["dims"]
    head = (f"{dims['method']} {dims['dims']} of {dims['full_dim']}" if dims else f"{rec['embed_dim']}-d")
    print(f"exported {rec['encoder']['model']} → {res.graph} ({rec['graph_format']}, {rec['dtype']}, "
          f"{rec['image_size']}px → {head}, {'L2-normalised' if rec['normalized'] else 'raw'})")
    print(f"sha256 {rec['sha256']}")
    print(f"parity: {res.parity.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
