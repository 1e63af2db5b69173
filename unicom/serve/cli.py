"""``unicom-serve``: a search service and web page for an index built by ``unicom-embed``, and a
browser of the pseudo classes of a ``unicom-cluster`` output (docs/serve.md).

  unicom-serve --index runs/photos                      # http://127.0.0.1:8000/
  unicom-serve --index runs/demo/index --clusters runs/demo/cluster --port 8080
  unicom-serve --clusters runs/laion                    # the pseudo classes alone

The queries are embedded by the encoder recorded in the index, loaded once at start; --model
may name that same encoder, any other is refused. It binds to 127.0.0.1 unless --host says
otherwise. It only reads its folders, so it takes no lock on them.
"""
from __future__ import annotations

import argparse
import errno
import socket
import sys
from typing import Optional, Sequence

from ..cli.dataclass_args import add_dataclass_arguments, dataclass_from_namespace
from ..cli.flags import HelpFormatter, fail
from .config import ServeConfig

PROG = "unicom-serve"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    add_dataclass_arguments(p, ServeConfig)
    return p


def check_port(host: str, port: int) -> None:
    """Raise ``ValueError`` when ``host:port`` cannot be bound (in use, or not an address here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exn:
            why = "is in use: stop the other server or pass --port" if exn.errno == errno.EADDRINUSE else \
                f"cannot be bound ({exn.strerror}): check --host"
            raise ValueError(f"{host}:{port} {why}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exn:
        return fail(PROG, f"error: unicom-serve needs the serve extra ({exn.name} is missing): "
                          "pip install 'unicom-toolkit[serve]'")
    cfg = dataclass_from_namespace(ServeConfig, args)
    from ..cli.log_setup import setup_logging

    setup_logging(PROG, args.log_level)
    try:
        cfg.check()
        check_port(cfg.host, cfg.port)  # before minutes of loading, not after
        from .app import create_app
        from .service import Service

        service = Service.load(cfg)
    except (FileNotFoundError, ValueError, ConnectionError, RuntimeError) as exn:
        return fail(PROG, f"error: {exn}")
    import uvicorn

    app = create_app(service=service)
    print(f"{PROG}: serving on http://{cfg.host}:{cfg.port}/ (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=args.log_level.lower(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
