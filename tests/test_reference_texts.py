"""Under the preset ``paper`` every text a model reads is the reference implementation's, byte for byte.

The expected texts are written here from the reference's own code, independently of ``quota/reference.py``:
MAC-AutoML/QuoTA ``quota_pipeline.py`` (decoupling prompt, frame questions, answer text, time sentence) and
``tools/qwen2vl_batch.py`` (the scorer's chat turn), LLaVA-NeXT ``llava/conversation.py`` (``qwen_1_5``) and
lmms-eval's ``llava_vid`` (the placeholder and line breaks of the answer turn). The one long string, the
decoupling instruction, is checked by its SHA-256 (computed from the reference file) instead of a second copy.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from quota.cli import main
from quota.models import LlavaOnevisionAdapter
from quota.reference import DECOUPLE_INSTRUCTION
from quota.testing.videos import make_video
from quota.video import load_frames

QUESTION = "What does the man put into the box?"
OPTIONS = ["a cup", "a book"]
# quota_pipeline.py writes its query as the question followed by "A. text." per option on the same line.
QUERY = "What does the man put into the box? A. a cup. B. a book."

# SHA-256 of retrieve_pmt_0 after its `query` (quota_pipeline.py, MAC-AutoML/QuoTA at ec194d7).
INSTRUCTION_SHA256 = "3bba2d9c6dbdb31e7d65894c59dedea341dfba9fa149164f3d90d1aed1459f52"

# llava/conversation.py, conv_qwen ("qwen_1_5"), SeparatorStyle.CHATML:
#   ret = system + sep + "\n"; for role, message: ret += role + "\n" + message + sep + "\n"; open turn: role + "\n"
QWEN_1_5_SYSTEM = "<|im_start|>system\nYou are a helpful assistant."


def qwen_1_5(message: str) -> str:
    return QWEN_1_5_SYSTEM + "<|im_end|>" + "\n" + "<|im_start|>user" + "\n" + message + "<|im_end|>" + "\n" + \
        "<|im_start|>assistant" + "\n"


def scorer_turn(query_relation: str) -> str:
    # tools/qwen2vl_batch.py: the Qwen2-VL template with its default system turn, image first, then the text
    # (its comment shows the expected rendering); image pads collapsed to one here.
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|vision_end|>" + query_relation + "<|im_end|>\n<|im_start|>assistant\n")


def frame_question_objects(obj_list: list[str]) -> str:  # quota_pipeline.py, process_video_prune
    return "Does the image contain any object of " + ", ".join(obj_list) + "? A. yes, B. no\nAnswer with the option's letter directly."


def frame_question_none(query: str) -> str:  # quota_pipeline.py, process_video_prune
    return f"{query}\nDoes the image contain sufficient information to answer the given question? A. yes, B. no\nAnswer with the option's letter directly."


def time_instruction(video_time: float, times: list[float]) -> str:  # quota_pipeline.py / lmms-eval llava_vid
    frame_time = ",".join([f"{i:.2f}s" for i in times])
    return f"The video lasts for {video_time:.2f} seconds, and {len(times)} frames are uniformly sampled from it. These frames are located at {frame_time}.Please answer the following questions related to this video."


def answer_turn(video_time: float, times: list[float]) -> str:
    # quota_pipeline.py: qs of the final call; lmms-eval llava_vid: "<image>" + "\n" + time sentence + "\n" + qs
    # (the Hugging Face checkpoint's placeholder is <video>).
    qs = "Select the best answer to the following multiple-choice question based on the video. Respond with only the letter (A, B, C, or D) of the correct option. Question: " + QUERY + '\nThe best answer is:'
    return qwen_1_5("<video>" + "\n" + f"{time_instruction(video_time, times)}\n" + qs)


def test_the_decoupling_instruction_is_the_references():
    assert hashlib.sha256(DECOUPLE_INSTRUCTION.encode()).hexdigest() == INSTRUCTION_SHA256
    assert DECOUPLE_INSTRUCTION.startswith("\nTo answer this question,") and DECOUPLE_INSTRUCTION.endswith("Step 1: no")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("ref") / "clip.mp4", n_frames=20, fps=10, size=(96, 72))


def _ask(monkeypatch, capsys, clip, base, scorer, cot: str | None, *extra: str) -> tuple[list[str], dict]:
    """Run ``quota ask --preset paper`` in process; returns every text given to a tokenizer and the JSON."""
    seen: list[str] = []
    real_call = PreTrainedTokenizerBase.__call__

    def spy(self, text=None, *args, **kwargs):
        seen.extend([text] if isinstance(text, str) else list(text))
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", spy)
    if cot is not None:
        real_generate_text = LlavaOnevisionAdapter.generate_text

        def injected(self, prompt, max_new_tokens=256, *, stop=None, chat="model"):
            real_generate_text(self, prompt, max_new_tokens=1, chat=chat)  # the real turn reaches the tokenizer
            return cot

        monkeypatch.setattr(LlavaOnevisionAdapter, "generate_text", injected)
    argv = ["ask", str(clip), QUESTION, "--options", *OPTIONS, "--base", str(base), "--preset", "paper",
            "--frames", "4", "--budget", "20", "--set", "max_new_tokens=2", "--set", "scorer_batch_size=2",
            "--quiet", "--json", *extra]
    if scorer is not None:
        argv += ["--scorer", str(scorer)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return [re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", t) for t in seen], json.loads(out)


def _turns(seen: list[str]) -> list[str]:
    """The chat turns among the texts, each once, in order (the rest are length checks of the prompt)."""
    out: list[str] = []
    for text in seen:
        if text.startswith("<|im_start|>") and text not in out:
            out.append(text)
    return out


@pytest.mark.parametrize("cot, objects", [
    ('Step 1: yes\nStep 2: ["Man", "Box", "video"]\nStep 3: ["Man", "Box"]', ["man", "box"]),
    ("Step 1: no\nStep 2: null\nStep 3: null", None),
], ids=["objects", "step1-no"])
def test_quota_ask_paper_sends_the_references_texts(monkeypatch, capsys, clip, tiny_llava_video, tiny_qwen2_vl,
                                                    cot, objects):
    seen, data = _ask(monkeypatch, capsys, clip, tiny_llava_video, tiny_qwen2_vl, cot)
    plan = data["plan"]
    decoupling = qwen_1_5(QUERY + DECOUPLE_INSTRUCTION)
    question = frame_question_objects(objects) if objects else frame_question_none(QUERY)
    answer = answer_turn(plan["duration"], plan["timestamps"])
    assert _turns(seen) == [decoupling, scorer_turn(question), answer]
    assert plan["conversation"] == "qwen_1_5"
    assert (plan["clue"]["objects"] or None) == objects
    # every other text is a length check of what the turns hold
    others = {t for t in seen if not t.startswith("<|im_start|>")}
    assert others <= {QUESTION + "\nA. a cup\nB. a book", answer.split("<video>\n", 1)[1].split("<|im_end|>")[0]}


def test_quota_ask_paper_baseline_sends_the_references_turn(monkeypatch, capsys, clip, tiny_llava_video):
    seen, data = _ask(monkeypatch, capsys, clip, tiny_llava_video, None, None, "--baseline",
                      "--set", "baseline_frames=3")
    frames = load_frames(clip, n=3)
    assert _turns(seen) == [answer_turn(frames.duration, frames.timestamps.tolist())]


def test_checkpoint_template_stays_an_option(monkeypatch, capsys, clip, tiny_llava_video):
    seen, data = _ask(monkeypatch, capsys, clip, tiny_llava_video, None, None, "--baseline",
                      "--set", "baseline_frames=3", "--set", "chat_template=model")
    (turn,) = _turns(seen)
    assert not turn.startswith(QWEN_1_5_SYSTEM) and "<video>" in turn
