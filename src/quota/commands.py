"""What the subcommands share: the model options, the config and pipeline they ask for, and how they talk.

``quota ask`` / ``quota plan`` (:mod:`quota.cli`), ``quota eval`` (:mod:`quota.eval.cli`) and ``quota demo``
(:mod:`quota.demo`) build on these; nothing here knows a subcommand. Importing this module loads nothing
heavy (the parser is built from it); :func:`load_pipeline` imports the pipeline when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from .config import DEFAULT_BASE, PRESETS, QuotaConfig, field_names, resolve_config
from .errors import TRUST_HINT, ConfigError, QuotaError
from .outputs import check_outputs

PROG = "quota"
#: The report formats ``--report`` writes, by suffix.
REPORT_SUFFIXES = (".html", ".htm", ".png")


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


def status(args: argparse.Namespace, message: str, *, always: bool = False) -> None:
    """A status line on stderr (``quota: ...``), unless ``--quiet`` (``always``: even then)."""
    if always or not getattr(args, "quiet", False):
        print(f"{PROG}: {terminal_text(message)}", file=sys.stderr, flush=True)


def base_model(args: argparse.Namespace, config: QuotaConfig, *, plan_only: bool = False) -> str | None:
    """The base model to load: ``--base``, the paper's by default, none for plans whose scorer reads no clue (no
    query decoupling to run: ``uniform``)."""
    from .scoring.registry import read_scorer

    choice = read_scorer(config.scorer)
    if args.base is None and plan_only and not choice.is_base and not choice.uses_clue:
        return None
    return args.base or DEFAULT_BASE


def load_pipeline(args: argparse.Namespace, *, plan_only: bool = False, config: QuotaConfig | None = None,
                  device: str | None = None, quiet: bool | None = None) -> Any:
    """A :class:`~quota.pipeline.QuoTA` from the options of :func:`add_model_options` (or from ``config``, which
    must come from :func:`command_config`).

    With ``plan_only`` and ``--scorer uniform`` and no ``--base``, no model is loaded at all. ``device`` and
    ``quiet`` replace ``--device`` and ``--quiet`` for the pipeline (``quota eval`` gives each rank its device
    and shows one progress bar for the run); status lines still follow ``--quiet``.
    """
    config = config or command_config(args)  # checked before anything loads: a typo costs no model load
    base = base_model(args, config, plan_only=plan_only)
    terminal = not getattr(args, "quiet", False) and sys.stderr.isatty()
    if not getattr(args, "verbose", False):
        quiet_libraries(downloads=terminal)  # download bars on a terminal; a line per file elsewhere
    from .pipeline import QuoTA
    from .preflight import hub_offline, resolve_sources
    from .scoring.registry import read_scorer

    scorer = read_scorer(config.scorer).checkpoint or None
    for source in resolve_sources({"base": base, "scorer": scorer}, probe_hub=False):
        if source.kind == "hub":
            status(args, f"downloading the {source.role} model {source.model_id} from the Hugging Face hub "
                         "(first use; several GB for the paper's models)" + ("" if terminal else "..."))
            if not terminal and not hub_offline():  # no bars in a log: a line per file instead
                download_with_lines(args, source.model_id, trust_remote_code=args.trust_remote_code)

    what = [f"base {base}"] if base else []
    if read_scorer(config.scorer).loads_checkpoint:
        what.append(f"scorer {config.scorer}")
    if what:
        status(args, "loading " + ", ".join(what))
    start = time.perf_counter()
    qa = QuoTA.from_pretrained(
        base=base, preset=config, device=args.device if device is None else device, dtype=args.dtype,
        quiet=args.quiet if quiet is None else quiet,
        trust_remote_code=args.trust_remote_code,
    )
    if base is not None:
        status(args, f"models ready in {time.perf_counter() - start:.1f} s")
    return qa


#: The files of a checkpoint that loading it with transformers reads (weights, configs, tokenizer and processor
#: files, chat templates); code files only with ``--trust-remote-code``.
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")


def download_with_lines(args: argparse.Namespace, model_id: str, *, trust_remote_code: bool = False) -> None:
    """Fetch a hub checkpoint file by file into the hub cache, one status line per file with its size, so a log
    (no terminal, no progress bars) shows what a first run is downloading. ``.bin`` weights are fetched only when
    the checkpoint has no ``.safetensors``. Loading then reads the cache."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(model_id, files_metadata=True)
    files = [(f.rfilename, f.size or 0) for f in info.siblings or []]
    patterns = CHECKPOINT_FILES + (("*.py",) if trust_remote_code else ())
    if not any(name.endswith(".safetensors") for name, _ in files):
        patterns += ("*.bin",)
    wanted = [(name, size) for name, size in files if any(fnmatch(name, p) for p in patterns)]
    for k, (name, size) in enumerate(wanted, 1):
        status(args, f"downloading {model_id}/{name} ({size / 2**20:.1f} MB, file {k} of {len(wanted)})")
        hf_hub_download(model_id, name, revision=info.sha)


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
    from .preflight import check_device

    if not getattr(args, "verbose", False):
        quiet_libraries()  # reading configs can already make the libraries talk
    check_request(args)
    check_outputs(outputs, [args.video], force=getattr(args, "force", False))
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
    from .preflight import base_context, check_budget, check_device, resolve_sources
    from .scoring.registry import read_scorer

    check_device(args.device)
    scorer = None if baseline else read_scorer(config.scorer).checkpoint or None
    sources = resolve_sources({"base": base, "scorer": scorer})
    if baseline:
        return
    context = None
    if any(s.role == "base" for s in sources):
        context = base_context(base, trust_remote_code=args.trust_remote_code)
    check_budget(config.budget, frames=frames, context=context, max_new_tokens=config.max_new_tokens)


def check_report_path(path: str | None) -> None:
    if path is not None and Path(path).suffix.lower() not in REPORT_SUFFIXES:
        raise ConfigError(f"--report {path!r}: the report format comes from the suffix; use .html or .png")


def check_request(args: argparse.Namespace) -> None:
    """Fail before anything loads on a report path (``--report``, if the command has one) of unknown format, an empty question, an empty option or
    more options than letters."""
    from .choices import check_question

    check_report_path(getattr(args, "report", None))
    check_question(args.question, args.options)
    if args.options is not None and not all(str(o).strip() for o in args.options):
        raise ConfigError("--options: an option is empty")
    from .choices import check_option_labels

    check_option_labels(args.options, "--options")


def text_reserve(frames: int, config: QuotaConfig) -> int:
    """Context positions to keep for the text next to ``config.budget`` visual tokens on ``frames`` frames
    (:func:`quota.preflight.text_reserve`)."""
    from .preflight import text_reserve as reserve

    return reserve(frames, config.budget, config.max_new_tokens)


def plan_json(plan: Any) -> str:
    """``plan`` as JSON with one top-level field per line (lists stay on their line): easy to read and to
    diff, and :meth:`Plan.from_json` reads it back exactly."""
    items = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in plan.to_dict().items()]
    return "{\n" + ",\n".join(items) + "\n}"


def one_line(message: str) -> str:
    return " ".join(str(message).split()) or "failed"


def error_line(exc: QuotaError) -> str:
    """The one line the command line prints for ``exc`` (``quota: error: ...``); the demo page shows it too."""
    message = one_line(str(exc)).replace(TRUST_HINT, "--trust-remote-code")
    return f"{PROG}: error: {terminal_text(message)}"


#: What to lower when memory runs out, in the order that saves most.
MEMORY_ADVICE = ("fewer frames (--frames N)", "a smaller budget (--budget N)",
                 "smaller decoded frames (--set decode_max_pixels=N)", "a smaller dtype (--dtype bfloat16)")


def memory_error(exc: BaseException) -> QuotaError | None:
    """The one-line error for running out of memory (a GPU's or this machine's), or ``None`` for anything else."""
    name = type(exc).__name__
    text = str(exc).lower()
    if isinstance(exc, MemoryError):
        where = "this machine's memory"
    elif name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and (
            "out of memory" in text or "can't allocate memory" in text)):
        where = "the GPU's memory" if "cuda" in text or name == "OutOfMemoryError" else "memory"
    else:
        return None
    return QuotaError(f"out of memory: the run needs more than {where} holds; lower what it keeps: "
                      + ", ".join(MEMORY_ADVICE))


__all__ = ["PROG", "check_video", "preflight", "preflight_models", "check_request", "check_report_path", "add_model_options", "command_config", "quiet_libraries", "terminal_text", "status", "base_model",
           "load_pipeline", "text_reserve",
           "plan_json", "one_line", "error_line", "memory_error", "MEMORY_ADVICE"]
