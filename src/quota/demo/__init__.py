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
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..config import DEFAULT_BASE
from ..errors import ConfigError

#: Address the page is served on unless ``--host`` says otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Largest upload unless ``--max-upload-mb`` says otherwise, in MiB (an hour of 1080p H.264 is about 1 GiB).
DEFAULT_MAX_UPLOAD_MB = 1024.0


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
                   help="folder for each run's plan JSON and HTML report, kept (default: a temporary folder, "
                        "removed when the page is closed or the server stops)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest video a visitor may upload, in MiB (default {DEFAULT_MAX_UPLOAD_MB:g})")
    add_model_options(p)
    p.set_defaults(func=run_demo)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: a port is a number from 1 to 65535")
    if args.videos is not None and not Path(args.videos).is_dir():
        raise ConfigError(f"--videos {args.videos}: not a folder")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb {args.max_upload_mb:g}: must be more than 0")


def _import_gradio(workdir: Path) -> None:
    from .app import prepare_environment

    prepare_environment(workdir)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("quota demo needs Gradio: pip install 'quota[demo]'") from None


def _stop_on_sigterm() -> None:
    """SIGTERM ends the server as Ctrl+C does (cleaning up), not abruptly."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def run_demo(args: argparse.Namespace) -> int:
    """Check everything that needs no weights (the port, the device, the models' sources, the budget against the
    base model's context), load the models, serve the page until interrupted, then remove the temporary files.
    Returns the exit status."""
    from ..commands import base_model, command_config, load_pipeline, preflight_models, status
    from ..preflight import check_port

    _check_args(args)
    check_port(args.host, args.port)  # before minutes of model loading
    config = command_config(args)
    preflight_models(args, config, base=base_model(args, config), frames=config.base_frames)
    workdir = Path(tempfile.mkdtemp(prefix="quota-demo-"))
    _stop_on_sigterm()
    try:
        _import_gradio(workdir)
        return _serve(args, config, workdir, load_pipeline, status)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _serve(args: argparse.Namespace, config: Any, workdir: Path, load_pipeline: Any, status: Any) -> int:
    from .app import build_app, launch, make_example
    from .session import DemoSession

    qa = load_pipeline(args, config=config)
    out_dir = Path(args.out) if args.out else workdir / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    session = DemoSession(qa, out_dir, base=args.base or DEFAULT_BASE, scorer=qa.config.scorer, preset=args.preset)
    example = make_example(workdir)
    app = build_app(session, args.videos, keep_runs=bool(args.out), example=example)
    try:
        try:
            url = launch(app, host=args.host, port=args.port, share=args.share, out_dir=out_dir, videos=args.videos,
                         max_upload_mb=args.max_upload_mb)
        except OSError as exc:
            raise ConfigError(f"--port {args.port}: cannot serve on {args.host}:{args.port} ({exc}); "
                              "choose another with --port") from None
        print(f"quota demo: serving on {url} (Ctrl+C stops it)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            status(args, f"bound to {args.host}: other machines on the network can reach this page")
        app.block_thread()
    finally:
        session.stop()  # a run in progress ends at its next stage
        app.close()
    status(args, "stopped; temporary files removed")
    return 0


__all__ = ["add_demo_parser", "run_demo", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_MAX_UPLOAD_MB"]
