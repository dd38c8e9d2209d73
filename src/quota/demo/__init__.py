"""``quota demo``: a local web page that shows where the model looks.

    quota demo [--videos DIR] [--host 127.0.0.1] [--port 7860] [--share] [model options of quota ask]

The page takes a video (an upload, or a file of ``--videos DIR``), a question and optional options, and
shows the answer, the objects the query decoupling found, the frames the model is given with their token
grids and scores, the score and token charts, per-stage timings and the settings; the plan JSON and the
HTML report can be downloaded. See docs/demo.md.

Modules: :mod:`quota.demo.session` runs the questions (no web code), :mod:`quota.demo.app` is the page.
This module only adds the subcommand; Gradio (``pip install quota[demo]``) is imported when it runs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from ..config import DEFAULT_BASE
from ..errors import ConfigError

#: Address the page is served on unless ``--host`` says otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``quota demo`` subcommand (listed in :data:`quota.cli.COMMANDS`)."""
    from ..commands import add_model_options

    p = subparsers.add_parser(
        "demo", help="a local web page: ask about a video, see which frames get how many tokens",
        description="Serve a web page (Gradio) where you upload a video, ask a question and see the answer, "
                    "the objects looked for, the frames with their token grids and scores, and the timings. "
                    "The models load once; runs take turns. Needs the extra: pip install 'quota[demo]'.",
    )
    p.add_argument("--videos", metavar="DIR", default=None, help="folder of videos to pick from on the page")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    p.add_argument("--share", action="store_true",
                   help="also make a public gradio.live link (off unless asked: anyone with it can use your models)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for each run's plan JSON and HTML report (default: a new temporary folder)")
    add_model_options(p)
    p.set_defaults(func=run_demo)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: a port is a number from 1 to 65535")
    if args.videos is not None and not Path(args.videos).is_dir():
        raise ConfigError(f"--videos {args.videos}: not a folder")


def _import_gradio() -> None:
    from .app import prepare_environment

    prepare_environment()
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("quota demo needs Gradio: pip install 'quota[demo]'") from None


def run_demo(args: argparse.Namespace) -> int:
    """Load the models, serve the page until interrupted. Returns the exit status."""
    from ..commands import load_pipeline, status
    from .app import build_app, launch
    from .session import DemoSession

    _check_args(args)
    _import_gradio()
    qa = load_pipeline(args)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="quota-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    session = DemoSession(qa, out_dir, base=args.base or DEFAULT_BASE, scorer=qa.config.scorer, preset=args.preset)
    app = build_app(session, args.videos)
    try:
        url = launch(app, host=args.host, port=args.port, share=args.share, out_dir=out_dir, videos=args.videos)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    print(f"quota demo: serving on {url} (Ctrl+C stops it)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        status(args, f"bound to {args.host}: other machines on the network can reach this page")
    try:
        app.block_thread()
    finally:
        app.close()
    return 0


__all__ = ["add_demo_parser", "run_demo", "DEFAULT_HOST", "DEFAULT_PORT"]
