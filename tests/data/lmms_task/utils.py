"""Hooks of the tiny ``quota_tiny_mc`` lmms-eval task (tests only)."""

from __future__ import annotations

import re


def doc_to_visual(doc):
    """The video of a sample, as lmms-eval video tasks give it: a one-element list of paths."""
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """Question, one option per line, then the post-prompt (the layout of lmms-eval's video MCQ tasks)."""
    kwargs = lmms_eval_specific_kwargs or {}
    lines = [kwargs.get("pre_prompt", "") + doc["question"], *doc["options"], kwargs.get("post_prompt", "")]
    return "\n".join(line for line in lines if line)


def process_results(doc, results):
    """Accuracy of one sample: 1.0 when the first standalone option letter equals the answer."""
    text = results[0] if results else ""
    found = re.search(r"\b([A-D])\b", text)
    return {"accuracy": float(bool(found) and found.group(1) == doc["answer"])}
