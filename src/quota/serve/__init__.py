"""``quota serve``: an OpenAI-compatible chat-completions endpoint that runs QuoTA on every video request.

    quota serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--videos DIR] [--max-queue 16]
                [--timeout 600] [--max-upload-mb 512] [model options of quota ask]

The models load once; one worker answers the requests in turn from a bounded queue. See docs/serve.md.

Modules: :mod:`~quota.serve.protocol` (the wire format), :mod:`~quota.serve.media` (where a video comes
from), :mod:`~quota.serve.worker` (the queue and the model thread), :mod:`~quota.serve.service` (a request
from body to completion, no web code), :mod:`~quota.serve.app` (FastAPI routes and the uvicorn server).
This module only adds the subcommand: FastAPI and uvicorn (``pip install quota[serve]``) load when it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: Address served unless ``--host`` says otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Environment variable read for the API key when ``--api-key`` is not given (keeps it out of ``ps``).
API_KEY_ENV = "QUOTA_API_KEY"


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``quota serve`` subcommand (listed in :data:`quota.cli.COMMANDS`)."""
    from ..commands import add_model_options

    p = subparsers.add_parser(
        "serve", help="an OpenAI-compatible chat-completions endpoint that runs QuoTA on every video request",
        description="Serve POST /v1/chat/completions and GET /v1/models: each request carries one video "
                    "(a data: URL, or a file of --videos DIR) and a question; QuoTA plans the visual tokens and "
                    "the base model answers. Models load once; requests take turns on one worker. Needs the "
                    "extra: pip install 'quota[serve]'. docs/serve.md",
    )
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--api-key", metavar="KEY", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every /v1 request (default: ${API_KEY_ENV} if set, "
                        "else no check)")
    p.add_argument("--videos", metavar="DIR", default=None,
                   help="also accept video URLs that are paths or file:// URLs of files inside DIR (nothing "
                        "outside it is read); without it only data: URLs are accepted")
    p.add_argument("--max-queue", type=int, default=16, metavar="N",
                   help="requests that may wait while one runs; more get 429 with Retry-After (default 16)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds a request may take, waiting included, before it gets 504 (default 600)")
    p.add_argument("--max-upload-mb", type=float, default=512.0, metavar="MB",
                   help="largest request body, in MB (2^20 bytes); larger ones get 413 (default 512)")
    p.add_argument("--served-model-name", metavar="NAME", default=None,
                   help="the model name clients send and /v1/models lists (default: the --base id)")
    add_model_options(p)
    p.set_defaults(func=run_serve)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port}: a port is a number from 0 to 65535")
    if args.videos is not None and not Path(args.videos).is_dir():
        raise ConfigError(f"--videos {args.videos}: not a folder")
    if args.max_queue < 1:
        raise ConfigError(f"--max-queue {args.max_queue}: must be at least 1")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout}: must be > 0 seconds")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb {args.max_upload_mb}: must be > 0")
    if args.api_key is not None and not args.api_key.strip():
        raise ConfigError("--api-key is empty")


def _import_web() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("quota serve needs FastAPI and uvicorn: pip install 'quota[serve]'") from None


def run_serve(args: argparse.Namespace) -> int:
    """Check the options, load the models, serve until interrupted (SIGINT / SIGTERM). Returns the exit
    status."""
    from ..commands import base_model, command_config, load_pipeline, status
    from ..preflight import check_device, resolve_sources

    if args.api_key is None and os.environ.get(API_KEY_ENV):
        args.api_key = os.environ[API_KEY_ENV]
    _check_args(args)
    _import_web()
    config = command_config(args)
    base = base_model(args, config)
    check_device(args.device)
    resolve_sources({"base": base, "scorer": None if config.scorer in ("uniform", "base") else config.scorer})
    qa = load_pipeline(args, config=config)

    from .app import bound_port, make_server
    from .service import Service, ServeSettings

    settings = ServeSettings(
        model=args.served_model_name or str(base), api_key=args.api_key, videos=args.videos,
        max_queue=args.max_queue, timeout=args.timeout, max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
        device=args.device, trust_remote_code=args.trust_remote_code,
    )
    spool = tempfile.mkdtemp(prefix="quota-serve-")
    service = Service(qa, settings, spool)

    def started(server: Any) -> None:
        url = f"http://{args.host}:{bound_port(server)}/v1"
        print(f"quota serve: {settings.model} on {url} (Ctrl+C stops it)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            status(args, f"bound to {args.host}: other machines on the network can reach this endpoint"
                          + ("" if args.api_key else " without an API key"))

    server = make_server(service, args.host, args.port, on_started=started)
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind
        raise ConfigError(f"cannot serve on {args.host}:{args.port} (in use, or not an address of this "
                          "machine)") from None
    finally:
        service.close()
        shutil.rmtree(spool, ignore_errors=True)
    if not server.started:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}")
    status(args, f"stopped; {service.worker.stats.completed} requests answered")
    return 0


__all__ = ["add_serve_parser", "run_serve", "DEFAULT_HOST", "DEFAULT_PORT", "API_KEY_ENV"]
