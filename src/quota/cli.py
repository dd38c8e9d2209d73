"""The ``quota`` command line.

    quota ask  VIDEO "QUESTION" [--options "A. ..." "B. ..."] [--json] [--report plan.html]
    quota plan VIDEO "QUESTION" --out plan.json [--report plan.html|plan.png]

Subcommands are added by small functions ``add_<name>_parser(subparsers)`` listed in :data:`COMMANDS`; each
creates its parser and sets ``func``, a handler ``(args) -> exit status``. Handlers reuse the shared helpers
of :mod:`quota.commands` (:func:`~quota.commands.add_model_options`, :func:`~quota.commands.command_config`,
:func:`~quota.commands.load_pipeline`, ...), which this module re-exports.

Building the parser imports nothing heavy; torch, transformers and the video code load only when a
command runs. Every :class:`~quota.errors.QuotaError` ends the program with one line on stderr
(``quota: error: ...``) and exit status 2, as argparse does for usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Callable, Sequence

from . import __version__
from .commands import (
    PROG,
    add_model_options,
    base_model,
    command_config,
    error_line,
    load_pipeline,
    memory_error,
    one_line,
    plan_json,
    preflight,
    status,
    terminal_text,
)
from .config import DEFAULT_BASE, parse_setting
from .errors import ConfigError, QuotaError
from .outputs import write_atomic

#: Exit status for errors quota reports on purpose (bad input, missing files or models), as argparse uses.
EXIT_ERROR = 2
#: Exit status when the main result was delivered but a side output (the report) failed.
EXIT_PARTIAL = 1
#: The status line shown as a pipeline stage starts (the stages not listed take no time worth a line).
STAGE_LINES = {"decode": "decoding the video", "decouple": "decoupling the question", "score": "scoring the frames",
               "encode": "encoding the frames", "generate": "answering"}

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


def _verbose_timings(args: argparse.Namespace, timings: dict[str, float]) -> None:
    if getattr(args, "verbose", False) and not getattr(args, "quiet", False):
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
        print(f"{PROG}: time per stage: {stages}", file=sys.stderr, flush=True)


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
    status(args, f"report written to {args.report}")


def _fmt_clue(clue: Any) -> str:
    if clue is None or clue.mode == "none":
        return "no query decoupling"
    if not clue.objects:
        return "no specific objects: frames are scored on whether they suffice to answer"
    return "looking for: " + ", ".join(clue.objects)


def stage_status(args: argparse.Namespace, qa: Any) -> Callable[[str], None]:
    """The pipeline's ``on_stage`` callback for ``ask`` and ``plan``: a status line as each slow stage starts
    (:data:`STAGE_LINES`; no decoupling line when this pipeline runs none)."""
    lines = dict(STAGE_LINES)
    if not (qa.uses_clue and qa.config.decouple != "none"):
        del lines["decouple"]

    def began(stage: str) -> None:
        if stage in lines:
            status(args, lines[stage])

    return began


def _plan_status(args: argparse.Namespace, plan: Any, tail: str = "") -> None:
    """What the plan's stages found: the frames decoded, the clue, and the plan line (then ``tail``)."""
    decode = plan.timings.get("decode", 0.0)
    status(args, f"decoded {len(plan.indices)} frames of {plan.duration:.1f} s of video in {decode:.1f} s")
    status(args, _fmt_clue(plan.clue))
    status(args, _plan_line(plan) + tail)


def _add_question_arguments(parser: argparse.ArgumentParser, *, options_help: str) -> None:
    """The arguments of ``ask`` and ``plan`` that say what to ask: VIDEO, QUESTION and ``--options``."""
    parser.add_argument("video", help="video file, or a folder of frame images (read in name order at 1 frame/s)")
    parser.add_argument("question", help="the question (quote it)")
    parser.add_argument("--options", nargs="+", metavar="OPTION", default=None, help=options_help)


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
    answer = qa.answer(args.video, args.question, options=args.options, baseline=args.baseline,
                       on_stage=stage_status(args, qa))
    if answer.plan is not None:
        _plan_status(args, answer.plan, f"; {answer.timings.get('total', 0.0):.1f} s in all")
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
            print(f"{PROG}: warning: the answer is above, but the report failed: {one_line(str(exc))}",
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
    plan = qa.plan(args.video, args.question, options=args.options, on_stage=stage_status(args, qa))
    _plan_status(args, plan)
    _verbose_timings(args, plan.timings)
    text = plan_json(plan)
    if args.out and args.out != "-":
        write_atomic(args.out, text + "\n")
        status(args, f"plan written to {args.out}")
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


def _safe_streams() -> None:
    """Never die on printing: model text can hold characters the terminal's encoding lacks."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings as one line of their own in the command line's voice (``quota: warning: ...``): a progress bar
    drawing on stderr is cleared first and drawn again below the line."""
    text = f"{PROG}: warning: {terminal_text(one_line(str(message)))}"
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(text, file=sys.stderr, flush=True)
        return
    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


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


#: Re-exported for callers of the command line from Python (the helpers live in :mod:`quota.commands`).
__all__ = ["COMMANDS", "build_parser", "main", "add_ask_parser", "add_plan_parser", "run_ask", "run_plan",
           "add_model_options", "command_config", "load_pipeline", "parse_setting", "terminal_text", "error_line",
           "DEFAULT_BASE"]


if __name__ == "__main__":
    sys.exit(main())
