"""The text each benchmark's reference harness sends with a question, reproduced exactly.

The paper's numbers come from lmms-eval with LLaVA-Video (model ``llava_vid``); so that ``quota eval``
and the lmms-eval plug-in show the model the same words, token for token, both build the benchmark text
here. Each builder takes one annotation row in the benchmark's published schema (the same row lmms-eval
hands its task as ``doc``) and returns the user text without the video and without any time instruction.

Sources (the strings below are interface text: copied exactly, never reworded):

- Video-MME: ``lmms_eval/tasks/videomme/utils.py`` ``videomme_doc_to_text`` with the ``llava_vid``
  entry of ``videomme.yaml``'s ``lmms_eval_specific_kwargs`` (lmms-eval 0.7.3).
- MLVU: ``lmms_eval/tasks/mlvu/utils.py`` ``mlvu_doc_to_text`` with ``mlvu_dev.yaml``'s ``default``
  entry (the task has no ``llava_vid`` entry).
- LongVideoBench: ``lmms_eval/tasks/longvideobench/utils.py`` ``longvideobench_doc_to_text`` with
  ``longvideobench_val_v.yaml``'s ``default`` entry.
- MVBench: ``lmms_eval/tasks/mvbench/utils.py`` ``mvbench_doc_to_text`` with the ``default`` entry of
  the per-task yamls (``mvbench_<task>.yaml``; all twenty use the same ``post_prompt``).
- NExT-QA: ``lmms_eval/tasks/nextqa/utils.py`` ``nextqa_doc_to_text_mc`` (``nextqa_mc_test.yaml`` has no
  ``lmms_eval_specific_kwargs``).
- VNBench (no lmms-eval task): the benchmark's own evaluation script,
  ``llava_examples/model_video_niah.py`` of github.com/joez17/VideoNIAH.
"""

from __future__ import annotations

import string
from typing import Any, Callable, Mapping

from ..errors import BenchmarkError

#: The lmms-eval prompt variant (``lmms_eval_specific_kwargs`` key) LLaVA-Video is evaluated with.
VARIANT = "llava_vid"

# Video-MME, lmms-eval videomme/utils.py videomme_doc_to_text (the text names subtitles even without them)
VIDEOMME_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
# Video-MME, videomme.yaml lmms_eval_specific_kwargs.llava_vid.post_prompt
VIDEOMME_POST = "The best answer is:"
# MLVU, mlvu_dev.yaml lmms_eval_specific_kwargs.default.post_prompt
MLVU_POST = "\nOnly give the best option.\nBest option: ("
# LongVideoBench, longvideobench_val_v.yaml lmms_eval_specific_kwargs.default.post_prompt
LONGVIDEOBENCH_POST = "Answer with the option's letter from the given choices directly.\n"
# MVBench, mvbench_<task>.yaml lmms_eval_specific_kwargs.default.post_prompt
MVBENCH_POST = "Only give the best option.\n"
# VNBench, VideoNIAH llava_examples/model_video_niah.py
VNBENCH_POST = "Answer with the option's letter from the given choices directly."

_LETTERS = string.ascii_uppercase


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _options(doc: Mapping[str, Any], *keys: str) -> list[str]:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str) and value.strip().startswith("["):
            import json

            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(value, (list, tuple)) and value:
            return [_text(v) for v in value]
    return []


def videomme_prompt(doc: Mapping[str, Any]) -> str:
    """Instruction, question, the options as published (``"A. ..."``, one a line), ``The best answer is:``."""
    options = _options(doc, "options", "candidates")
    labelled = [o if o.lstrip()[:2] == f"{_LETTERS[i]}." else f"{_LETTERS[i]}. {o}" for i, o in enumerate(options)]
    question = _text(doc.get("question")) + "\n" + "\n".join(labelled)
    return VIDEOMME_INSTRUCTION + "\n" + question + "\n" + VIDEOMME_POST


def mlvu_prompt(doc: Mapping[str, Any]) -> str:
    """The question as lmms-eval's MLVU table writes it (options already inside it) and the post-prompt.

    Rows of the original per-task files keep the options apart (``candidates``); they are written into
    the question as ``(A) text`` lines, the layout of the lmms-eval table, before the post-prompt.
    """
    question = _text(doc.get("question"))
    from .benchmarks._base import split_embedded_options

    if not split_embedded_options(question)[1]:
        options = _options(doc, "candidates", "options")
        if options:
            question = question + "\n" + "\n".join(f"({_LETTERS[i]}) {o}" for i, o in enumerate(options))
    return question + MLVU_POST


def longvideobench_prompt(doc: Mapping[str, Any]) -> str:
    """Question, ``A. option`` lines (``"N/A"`` slots left out), the post-prompt."""
    if any(f"option{i}" in doc for i in range(5)):
        candidates = [doc.get(f"option{i}") for i in range(5)]
        candidates = [_text(c) for c in candidates if c != "N/A" and c is not None]
    else:
        candidates = [c for c in _options(doc, "candidates") if c != "N/A"]
    question = _text(doc.get("question")) + "\n" + "\n".join(
        f"{_LETTERS[i]}. {c}" for i, c in enumerate(candidates))
    return f"{question}\n{LONGVIDEOBENCH_POST}"


def mvbench_prompt(doc: Mapping[str, Any]) -> str:
    """``Question:`` question, ``Option:`` and ``(A) text`` lines, the post-prompt."""
    lines = "".join(f"({_LETTERS[i]}) {o}\n" for i, o in enumerate(_options(doc, "candidates", "options")))
    return "Question:" + _text(doc.get("question")) + "\nOption:\n" + lines + MVBENCH_POST


def nextqa_prompt(doc: Mapping[str, Any]) -> str:
    """Question and ``A. text`` lines for the five options, both stripped; nothing else."""
    lines = [_text(doc.get("question")).strip()]
    for i in range(5):
        lines.append(f"{_LETTERS[i]}. {_text(doc.get(f'a{i}')).strip()}")
    return "\n".join(lines)


def vnbench_prompt(doc: Mapping[str, Any]) -> str:
    """Question, ``A. text`` lines for the four options, the benchmark's instruction."""
    options = _options(doc, "options", "candidates")
    if len(options) < 4:
        raise BenchmarkError(f"VNBench questions have four options, this one has {len(options)}")
    lines = "".join(f"\n{_LETTERS[i]}. {options[i]}" for i in range(4))
    return f"{_text(doc.get('question'))}{lines}\n{VNBENCH_POST}"


#: Benchmark registry name -> prompt builder.
BUILDERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "videomme": videomme_prompt,
    "mlvu": mlvu_prompt,
    "longvideobench": longvideobench_prompt,
    "mvbench": mvbench_prompt,
    "nextqa": nextqa_prompt,
    "vnbench": vnbench_prompt,
}

#: lmms-eval task names whose documents have a builder here (``mvbench_<task>`` by prefix).
LMMS_EVAL_TASKS: dict[str, str] = {
    "videomme": "videomme",
    "mlvu_dev": "mlvu",
    "longvideobench_val_v": "longvideobench",
    "nextqa_mc_test": "nextqa",
}


def benchmark_of_task(task: str) -> str | None:
    """The benchmark whose prompt an lmms-eval task gets, or ``None`` for a task not known here."""
    if task in LMMS_EVAL_TASKS:
        return LMMS_EVAL_TASKS[task]
    if task.startswith("mvbench_"):
        return "mvbench"
    return None


def benchmark_prompt(benchmark: str, doc: Mapping[str, Any]) -> str:
    """The text the reference harness sends for ``doc`` of ``benchmark``.

    Raises:
        BenchmarkError: an unknown benchmark.
    """
    if benchmark not in BUILDERS:
        raise BenchmarkError(f"no benchmark prompt for {benchmark!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[benchmark](doc)


__all__ = [
    "VARIANT",
    "BUILDERS",
    "LMMS_EVAL_TASKS",
    "benchmark_of_task",
    "benchmark_prompt",
    "videomme_prompt",
    "mlvu_prompt",
    "longvideobench_prompt",
    "mvbench_prompt",
    "nextqa_prompt",
    "vnbench_prompt",
]
