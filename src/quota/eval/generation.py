"""How long an answer may be on each benchmark: the generation settings of its reference harness.

The paper's numbers come from lmms-eval with LLaVA-Video, so ``quota eval`` and the lmms-eval plug-in
give the answer model the same cap on new tokens that lmms-eval's task gives it (greedy decoding
throughout). A longer cap can change what is read back as the letter (a model that writes on past
the letter), so the value is a fact of the experiment, kept here in one place.
"""

from __future__ import annotations

#: ``max_new_tokens`` of the answer per benchmark, as each reference harness sets it (lmms-eval 0.7.3,
#: ``lmms_eval/tasks/<task>/``; every task sets ``temperature: 0`` / ``do_sample: false``):
ANSWER_MAX_NEW_TOKENS: dict[str, int] = {
    # tasks/videomme/videomme.yaml, generation_kwargs.max_new_tokens
    "videomme": 16,
    # tasks/mlvu/mlvu_dev.yaml, generation_kwargs.max_new_tokens
    "mlvu": 16,
    # tasks/longvideobench/longvideobench_val_v.yaml, generation_kwargs.max_new_tokens
    "longvideobench": 32,
    # tasks/mvbench/_default_template_yaml (included by every mvbench_<task>.yaml), generation_kwargs
    "mvbench": 16,
    # tasks/nextqa/nextqa_mc_test.yaml sets no generation_kwargs; lmms-eval's llava_vid model then
    # generates up to 1024 tokens (models/simple/llava_vid.py, generate_until)
    "nextqa": 1024,
    # no lmms-eval task: VNBench's own script, llava_examples/model_video_niah.py of
    # github.com/joez17/VideoNIAH, calls model.generate(..., max_new_tokens=5)
    "vnbench": 5,
}


def answer_max_new_tokens(benchmark: str | None) -> int | None:
    """The answer's ``max_new_tokens`` of ``benchmark``'s reference harness, or ``None`` when unknown."""
    return ANSWER_MAX_NEW_TOKENS.get(benchmark) if benchmark else None


__all__ = ["ANSWER_MAX_NEW_TOKENS", "answer_max_new_tokens"]
