"""The ``quota`` command line.

    quota ask  VIDEO "QUESTION" [--options "A. ..." "B. ..."] [--json] [--report plan.html]
    quota plan VIDEO "QUESTION" --out plan.json [--report plan.html|plan.png]

Subcommands are added by small functions ``add_<name>_parser(subparsers)`` listed in :data:`COMMANDS`; each
creates its parser and sets ``func``, a handler ``(args) -> exit status``. Handlers may reuse
:func:`add_model_options`, :func:`command_config` and :func:`load_pipeline`.

Building the parser imports nothing heavy; torch, transformers and the video code load only when a
command runs. Every :class:`~quota.errors.QuotaError` ends the program with one line on stderr
(``quota: error: ...``) and exit status 2, as argparse does for usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .config import DEFAULT_BASE, PRESETS, QuotaConfig, field_names, parse_setting, resolve_config
from .errors import TRUST_HINT, ConfigError, QuotaError
from .outputs import check_outputs, write_atomic

PROG = "quota"
#: Exit status for errors quota reports on purpose (bad input, missing files or models), as argparse uses.
EXIT_ERROR = 2
#: Exit status when the main result was delivered but a side output (the report) failed.
EXIT_PARTIAL = 1
REPORT_SUFFIXES = (".html", ".htm", ".png")

#: ``(module, function)`` pairs that add the subcommands, in the order ``quota --help`` lists them. To add a
#: command, define ``add_<name>_parser(subparsers)`` in its own module and add a line here. The modules are
#: imported when the parser is built, so keep their top-level imports light.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("quota.cli", "add_ask_parser"),
    ("quota.cli", "add_plan_parser"),
    ("quota.eval.cli", "add_eval_parser"),
    ("quota.eval.cli", "add_report_parser"),
    ("quota.demo", "add_demo_parser"),
    ("quota.serve", "add_serve_parser"),
)


# ---------------------------------------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------------------------------------


def add_model_options(parser: argparse.ArgumentParser, *, plan_only: bool = False) -> None:
    """The options that choose the models and the settings (``--base``, ``--scorer``, ``--preset``,
    ``--budget``, ``--frames``, ``--set``, ``--device``, ``--dtype``, ``--trust-remote-code``, ``--quiet``)."""
    g = parser.add_argument_group("models and settings")
    base_help = (
        "base model: Hugging Face id or local checkpoint folder (LLaVA-OneVision / LLaVA-Video, Qwen2-VL, "
        f"Qwen2.5-VL); it writes the query decoupling and gives the native feature grid. Default: {DEFAULT_BASE}"
    )
    if plan_only:
        base_help += ", or none at all with --scorer uniform"
    g.add_argument("--base", metavar="ID", default=None, help=base_help)
    g.add_argument("--scorer", metavar="ID", default=None,
                   help="frame scorer: a Qwen2-VL / Qwen2.5-VL (or CLIP / SigLIP) id or folder, 'base' to "
                        "reuse the base model, or 'uniform' (no scoring, equal grids). Default: the preset's "
                        "(paper: Qwen/Qwen2-VL-2B-Instruct)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="named settings (default: paper, the paper's settings)")
    g.add_argument("--budget", type=int, metavar="N", default=None,
                   help="total visual tokens over all frames (paper: 12544)")
    g.add_argument("--frames", type=int, metavar="N", default=None, dest="base_frames",
                   help="frames sampled from any video before the per-hour extra (paper: 96)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="any other setting of quota.config.QuotaConfig, e.g. --set resize=adaptive_pool "
                        "--set allocation=exact (repeatable; docs/pipeline.md explains each). Keys: "
                        + ", ".join(field_names()))
    g.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    g.add_argument("--dtype", default=None,
                   help="model dtype: bfloat16, float16 or float32 (default: bfloat16 on GPU, float32 on CPU)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow checkpoints to run their own code (off unless you ask)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also the time of every stage, and the libraries' own warnings and progress bars")


def command_config(args: argparse.Namespace) -> QuotaConfig:
    """The :class:`QuotaConfig` the command line asks for: ``--preset``, then ``--set``, then the named flags
    (``--budget``, ``--frames``, ``--scorer``), through :func:`quota.config.resolve_config`. Loads nothing."""
    named = {name: getattr(args, name, None) for name in ("budget", "base_frames", "scorer")}
    return resolve_config(args.preset, {k: v for k, v in named.items() if v is not None},
                          getattr(args, "settings", None) or [], source="--set")


def quiet_libraries(downloads: bool = False) -> None:
    """Silence what the libraries underneath say that means nothing to a user of the command line:
    transformers' and the hub's warnings and progress bars, Python warnings from torch and friends. Our own
    status lines and warnings stay. ``--verbose`` skips this. ``downloads``: keep the hub's download bars (a
    first run fetches gigabytes)."""
    import logging
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"quota(\.|$)")  # ours stay (a truncated video, lost frames)
    for name in ("transformers", "huggingface_hub", "accelerate", "torch", "urllib3", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # transformers missing or changed: quiet is best effort
        pass
    try:
        from huggingface_hub import utils as hub_utils

        if downloads:
            hub_utils.enable_progress_bars()
        else:
            hub_utils.disable_progress_bars()
    except Exception:  # pragma: no cover - huggingface_hub comes with transformers
        pass


#: ANSI escape sequences (CSI, OSC and two-character ones) and control characters other than tab and newline.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    """``text`` safe to print to a terminal: escape sequences and control characters (model output can hold
    them) are removed; tabs and newlines stay."""
    return _ESCAPES.sub("", str(text))


def _status(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"{PROG}: {terminal_text(message)}", file=sys.stderr, flush=True)


def _verbose_timings(args: argparse.Namespace, timings: dict[str, float]) -> None:
    if getattr(args, "verbose", False) and not getattr(args, "quiet", False):
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
        print(f"{PROG}: time per stage: {stages}", file=sys.stderr, flush=True)


def base_model(args: argparse.Namespace, config: QuotaConfig, *, plan_only: bool = False) -> str | None:
    """The base model to load: ``--base``, the paper's by default, none for plans whose scorer reads no clue (no
    query decoupling to run: ``uniform``)."""
    from .scoring.registry import read_scorer

    choice = read_scorer(config.scorer)
    if args.base is None and plan_only and not choice.is_base and not choice.uses_clue:
        return None
    return args.base or DEFAULT_BASE


def load_pipeline(args: argparse.Namespace, *, plan_only: bool = False, config: QuotaConfig | None = None) -> Any:
    """A :class:`~quota.pipeline.QuoTA` from the options of :func:`add_model_options` (or from ``config``, which
    must come from :func:`command_config`).

    With ``plan_only`` and ``--scorer uniform`` and no ``--base``, no model is loaded at all.
    """
    config = config or command_config(args)  # checked before anything loads: a typo costs no model load
    base = base_model(args, config, plan_only=plan_only)
    terminal = not getattr(args, "quiet", False) and sys.stderr.isatty()
    if not getattr(args, "verbose", False):
        quiet_libraries(downloads=terminal)  # download bars on a terminal; a line per model elsewhere
    from .pipeline import QuoTA
    from .preflight import resolve_sources

    from .scoring.registry import read_scorer

    scorer = read_scorer(config.scorer).checkpoint or None
    for source in resolve_sources({"base": base, "scorer": scorer}, probe_hub=False):
        if source.kind == "hub":
            _status(args, f"downloading the {source.role} model {source.model_id} from the Hugging Face hub "
                          "(first use; several GB for the paper's models)" + ("" if terminal else "..."))

    what = [f"base {base}"] if base else []
    if read_scorer(config.scorer).loads_checkpoint:
        what.append(f"scorer {config.scorer}")
    if what:
        _status(args, "loading " + ", ".join(what))
    start = time.perf_counter()
    qa = QuoTA.from_pretrained(
        base=base, preset=config, device=args.device, dtype=args.dtype, quiet=args.quiet,
        trust_remote_code=args.trust_remote_code,
    )
    if base is not None:
        _status(args, f"models ready in {time.perf_counter() - start:.1f} s")
    return qa


def check_video(path: str) -> Any:
    """Open ``path`` as a video before any model loads, so a wrong path or a damaged file fails in a
    moment (the frame index this builds is cached and reused when the frames are read). Returns the index.

    A folder is a video given as frame images (:mod:`quota.video.frame_folder`): it must hold some.

    Raises:
        VideoNotFoundError, VideoDecodeError: as :func:`quota.video.probe`; VideoError for a folder
            without frame images.
    """
    from .video import is_frame_folder, probe

    if is_frame_folder(path):
        from .video.frame_folder import folder_index

        return folder_index(path)  # has n_frames and fps, as a video's index
    return probe(path)


def preflight(args: argparse.Namespace, config: QuotaConfig, *, base: str | None,
              outputs: dict[str, str | None], baseline: bool = False) -> None:
    """Every check that needs no model weights and no decoded frame, in the order a user would fix them:
    the question and options, the output paths, the device, the video, where the models come from (failing
    fast when the hub is needed but off or unreachable), and the budget against the sampled frames and the
    base model's context.

    Raises:
        ConfigError, BudgetError, ModelNotFoundError, VideoError: the first problem found.
    """
    from .choices import option_letters

    if not getattr(args, "verbose", False):
        quiet_libraries()  # reading configs can already make the libraries talk
    _check_question(args)
    if args.options:
        option_letters(len(args.options))  # at most 26 options
    check_outputs(outputs, [args.video], force=getattr(args, "force", False))
    from .preflight import check_device

    check_device(args.device)
    index = check_video(args.video)
    frames = None
    if not baseline:
        from .video import sample_indices

        frames = len(sample_indices(index.n_frames, index.fps or 1.0, **config.sampling))
    preflight_models(args, config, base=base, frames=frames, baseline=baseline)


def preflight_models(args: argparse.Namespace, config: QuotaConfig, *, base: str | None, frames: int | None,
                     baseline: bool = False) -> None:
    """The checks of :func:`preflight` that every entry point shares (``quota ask``/``plan``, ``quota demo`` at
    start-up): the device, where the models come from, and the budget against ``frames`` sampled frames and
    the base model's context (:func:`quota.preflight.check_budget`). Reads configuration files at most."""
    from .preflight import check_budget, check_device, context_tokens, resolve_sources
    from .scoring.registry import read_scorer

    check_device(args.device)
    scorer = None if baseline else read_scorer(config.scorer).checkpoint or None
    sources = resolve_sources({"base": base, "scorer": scorer})
    if baseline:
        return
    context = None
    if any(s.role == "base" for s in sources):
        from .models.loading import load_config

        context = context_tokens(load_config(base, trust_remote_code=args.trust_remote_code))
    check_budget(config.budget, frames=frames, context=context, max_new_tokens=config.max_new_tokens)


def text_reserve(frames: int, config: QuotaConfig) -> int:
    """Context positions to keep for the text next to ``config.budget`` visual tokens on ``frames`` frames
    (:func:`quota.preflight.text_reserve`)."""
    from .preflight import text_reserve as reserve

    return reserve(frames, config.budget, config.max_new_tokens)


def _check_report_path(path: str | None) -> None:
    if path is not None and Path(path).suffix.lower() not in REPORT_SUFFIXES:
        raise ConfigError(f"--report {path!r}: the report format comes from the suffix; use .html or .png")


def report_info(args: argparse.Namespace, qa: Any, answer: Any = None) -> Any:
    """What a report prints besides the plan (:class:`quota.report.RunInfo`): the answer (``None``: none was
    asked for), the options, the models loaded, the preset and the seconds per stage."""
    from .report import RunInfo

    base = args.base or (DEFAULT_BASE if getattr(qa, "adapter", None) is not None else None)
    timings = answer.timings if answer is not None else None
    return RunInfo(
        answer=None if answer is None else answer.text, choice=None if answer is None else answer.choice,
        options=tuple(getattr(args, "options", None) or ()), base=base, scorer=qa.config.scorer,
        preset=args.preset, timings=dict(timings or {}),
    )


def _write_report(args: argparse.Namespace, plan: Any, *, qa: Any = None, answer: Any = None) -> None:
    from .report import save_report

    try:
        save_report(plan, args.report, info=None if qa is None else report_info(args, qa, answer))
    except OSError as exc:
        raise QuotaError(f"cannot write {args.report}: {exc.strerror or exc}") from None
    _status(args, f"report written to {args.report}")


def plan_json(plan: Any) -> str:
    """``plan`` as JSON with one top-level field per line (lists stay on their line): easy to read and to
    diff, and :meth:`Plan.from_json` reads it back exactly."""
    items = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in plan.to_dict().items()]
    return "{\n" + ",\n".join(items) + "\n}"


def _fmt_clue(clue: Any) -> str:
    if clue is None or clue.mode == "none":
        return "no query decoupling"
    if not clue.objects:
        return "no specific objects: frames are scored on whether they suffice to answer"
    return "looking for: " + ", ".join(clue.objects)


def _early_stages(args: argparse.Namespace, qa: Any, options: Sequence[str] | None) -> None:
    """Decode the video and decouple the question ahead of ``qa.plan`` / ``qa.answer``, with a status line
    after each (the pipeline caches both, so the later call reuses them and still reports their seconds)."""
    qa.check_question(args.question, options)
    start = time.perf_counter()
    frames = qa.load_video(args.video)
    seconds = time.perf_counter() - start
    _status(args, f"decoded {len(frames)} frames of {frames.duration:.1f} s of video in {seconds:.1f} s")
    if qa.uses_clue and qa.config.decouple != "none":
        _status(args, "decoupling the question")
    _status(args, _fmt_clue(qa.decouple(args.question, options)))


def _add_question_arguments(parser: argparse.ArgumentParser, *, options_help: str) -> None:
    """The arguments of ``ask`` and ``plan`` that say what to ask: VIDEO, QUESTION and ``--options``."""
    parser.add_argument("video", help="video file, or a folder of frame images (read in name order at 1 frame/s)")
    parser.add_argument("question", help="the question (quote it)")
    parser.add_argument("--options", nargs="+", metavar="OPTION", default=None, help=options_help)


def _check_question(args: argparse.Namespace) -> None:
    """Fail before anything loads on a report path of unknown format or an empty question."""
    _check_report_path(args.report)
    if not args.question.strip():
        raise ConfigError("the question must be a non-empty string")
    if args.options is not None and not all(str(o).strip() for o in args.options):
        raise ConfigError("--options: an option is empty")
    from .choices import check_option_labels

    check_option_labels(args.options, "--options")


def _plan_line(plan: Any) -> str:
    objects = None if plan.clue is None else plan.clue.objects
    looked = f"; looked for: {', '.join(objects)}" if objects else ""
    n = plan.newline_tokens
    newlines = f" (+{n:,} newline token{'' if n == 1 else 's'}: {plan.positions:,} positions)" if n else ""
    return (f"{len(plan.keep)} of {len(plan.indices)} frames kept, {plan.tokens:,} of {plan.budget:,} "
            f"visual tokens{newlines}{looked}")


# ---------------------------------------------------------------------------------------------------------
# quota ask
# ---------------------------------------------------------------------------------------------------------


def add_ask_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ask", help="answer a question about a video",
        description="Answer a question about a video with QuoTA: sample frames, find what the question is "
                    "about, score every frame for it, give relevant frames more visual tokens, answer.",
    )
    _add_question_arguments(
        p, options_help='multiple-choice options, e.g. --options "A. a cup" "B. a book" (bare texts are '
                        "lettered in order); the chosen letter is printed too",
    )
    p.add_argument("--baseline", action="store_true",
                   help="skip QuoTA: the model's own uniform sampling (the paper's baseline), for comparison")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: text, choice, plan, timings, question, options, video")
    p.add_argument("--report", metavar="FILE", default=None,
                   help="also draw the token plan to FILE (.html or .png)")
    p.add_argument("--force", action="store_true", help="replace an existing --report file")
    add_model_options(p)
    p.set_defaults(func=run_ask)
    return p


def run_ask(args: argparse.Namespace) -> int:
    if args.baseline and args.report:
        raise ConfigError("--report needs a token plan, and --baseline makes none; drop one of them")
    config = command_config(args)
    if args.baseline:
        config = config.replace(scorer="uniform")  # the baseline scores nothing: load no scorer
    preflight(args, config, base=base_model(args, config), outputs={"--report": args.report},
              baseline=args.baseline)
    qa = load_pipeline(args, config=config)
    if not args.baseline:
        _early_stages(args, qa, args.options)
        _status(args, "scoring the frames")
        qa.plan(args.video, args.question, options=args.options)  # scores are cached for the answer
    _status(args, "answering")
    answer = qa.answer(args.video, args.question, options=args.options, baseline=args.baseline)
    if answer.plan is not None:
        _status(args, _plan_line(answer.plan) + f"; {answer.timings.get('total', 0.0):.1f} s in all")
    _verbose_timings(args, answer.timings)
    if args.json:
        data = answer.to_dict()
        data.update(question=args.question, options=args.options, video=str(args.video))
        print(json.dumps(data), flush=True)
    else:
        text = terminal_text(answer.text.strip())
        if answer.choice and not text.startswith(answer.choice):
            print(f"{answer.choice}: {text}", flush=True)
        else:
            print(text, flush=True)
    if args.report:  # the answer is out already: a failing report costs only the report
        try:
            _write_report(args, answer.plan, qa=qa, answer=answer)
        except QuotaError as exc:
            print(f"{PROG}: warning: the answer is above, but the report failed: {_one_line(str(exc))}",
                  file=sys.stderr)
            return EXIT_PARTIAL
    return 0


# ---------------------------------------------------------------------------------------------------------
# quota plan
# ---------------------------------------------------------------------------------------------------------


def add_plan_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plan", help="show which frames get how many tokens, without answering",
        description="Sample frames, decouple the question and score the frames, then write the token plan "
                    "as JSON (quota.types.Plan.to_json). No answer is generated.",
    )
    _add_question_arguments(p, options_help="multiple-choice options (they inform the query decoupling)")
    p.add_argument("-o", "--out", metavar="FILE", default=None,
                   help="write the plan JSON here (default: print it)")
    p.add_argument("--report", metavar="FILE", default=None,
                   help="also draw the plan to FILE (.html: page with chart, thumbnails and table; .png: picture)")
    p.add_argument("--force", action="store_true", help="replace existing --out / --report files")
    add_model_options(p, plan_only=True)
    p.set_defaults(func=run_plan)
    return p


def run_plan(args: argparse.Namespace) -> int:
    config = command_config(args)
    base = base_model(args, config, plan_only=True)
    preflight(args, config, base=base, outputs={"--out": args.out, "--report": args.report})
    qa = load_pipeline(args, plan_only=True, config=config)
    _early_stages(args, qa, args.options)
    _status(args, "scoring the frames")
    plan = qa.plan(args.video, args.question, options=args.options)
    _status(args, _plan_line(plan))
    _verbose_timings(args, plan.timings)
    text = plan_json(plan)
    if args.out and args.out != "-":
        write_atomic(args.out, text + "\n")
        _status(args, f"plan written to {args.out}")
    else:
        print(text)
    if args.report:
        _write_report(args, plan, qa=qa)
    return 0


# ---------------------------------------------------------------------------------------------------------
# The program
# ---------------------------------------------------------------------------------------------------------


def _registrars() -> list[Callable[[Any], Any]]:
    out = []
    for module_name, func_name in COMMANDS:
        # this module itself, also when it runs as ``python -m quota.cli`` (named __main__ then)
        module = sys.modules[__name__] if module_name == "quota.cli" else importlib.import_module(module_name)
        out.append(getattr(module, func_name))
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``quota`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="QuoTA: query-oriented visual token assignment for long-video question answering.",
        epilog="Run 'quota COMMAND --help' for the options of one command. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in _registrars():
        register(subparsers)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split()) or "failed"


def _safe_streams() -> None:
    """Never die on printing: model text can hold characters the terminal's encoding lacks."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass


def error_line(exc: QuotaError) -> str:
    """The one line the command line prints for ``exc`` (``quota: error: ...``); the demo page shows it too."""
    message = _one_line(str(exc)).replace(TRUST_HINT, "--trust-remote-code")
    return f"{PROG}: error: {terminal_text(message)}"


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings as one line of their own in the command line's voice (``quota: warning: ...``): a progress bar
    drawing on stderr is cleared first and drawn again below the line."""
    text = f"{PROG}: warning: {terminal_text(_one_line(str(message)))}"
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(text, file=sys.stderr, flush=True)
        return
    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


#: What to lower when memory runs out, in the order that saves most.
MEMORY_ADVICE = ("fewer frames (--frames N)", "a smaller budget (--budget N)",
                 "smaller decoded frames (--set decode_max_pixels=N)", "a smaller dtype (--dtype bfloat16)")


def memory_error(exc: BaseException) -> QuotaError | None:
    """The one-line error for running out of memory (a GPU's or this machine's), or ``None`` for anything else."""
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, MemoryError):
        where = "this machine's memory"
    elif name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and (
            "out of memory" in text.lower() or "can't allocate memory" in text.lower())):
        where = "the GPU's memory" if "cuda" in text.lower() or name == "OutOfMemoryError" else "memory"
    else:
        return None
    return QuotaError(f"out of memory: the run needs more than {where} holds; lower what it keeps: "
                      + ", ".join(MEMORY_ADVICE))


def _argument_order_error(parser: argparse.ArgumentParser, argv: Sequence[str]) -> ConfigError | None:
    """``--options`` takes every word after it: when it comes before VIDEO and QUESTION it swallows them, and
    argparse would only say they are missing. Name the order instead."""
    argv = list(argv)
    command = next((i for i, tok in enumerate(argv) if tok in ("ask", "plan")), None)
    if command is None or "--options" not in argv:
        return None
    sub = parser._subparsers._group_actions[0].choices[argv[command]]  # type: ignore[union-attr]
    positionals, i = 0, command + 1
    while i < len(argv) and argv[i] != "--options":
        tok = argv[i]
        if tok.startswith("-") and tok != "-":
            action = sub._option_string_actions.get(tok.split("=", 1)[0])
            takes_value = action is not None and action.nargs != 0 and "=" not in tok
            i += 2 if takes_value else 1
            continue
        positionals += 1
        i += 1
    if positionals >= 2:
        return None
    return ConfigError(f"--options takes every word after it, so VIDEO and QUESTION must come before it: "
                       f"{PROG} {argv[command]} VIDEO \"QUESTION\" --options \"A. ...\" \"B. ...\"")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``quota`` command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    _safe_streams()
    parser = build_parser()
    order = _argument_order_error(parser, sys.argv[1:] if argv is None else argv)
    if order is not None:
        print(error_line(order), file=sys.stderr)
        return EXIT_ERROR
    args = parser.parse_args(argv)  # usage errors exit with status 2 here
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed (to say how to resume)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except QuotaError as exc:
        print(error_line(exc), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        error = memory_error(exc)
        if error is None:
            raise
        print(error_line(error), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader of our output went away (``quota plan ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
