"""Each benchmark's answer length is its reference harness's (issue 17, "Answer length"): the table in
quota.eval.generation matches the installed lmms-eval task files, and the value reaches the answer
model's ``generate`` call in ``quota eval`` and in the lmms-eval plug-in."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import transformers.generation.utils as gen_utils

from quota.cli import main
from quota.eval.generation import ANSWER_MAX_NEW_TOKENS
from test_eval_cli import write_benchmark

lmms_eval = pytest.importorskip("lmms_eval")
TASKS = Path(os.path.dirname(lmms_eval.__file__)) / "tasks"


def _yaml_max_new_tokens(path: Path) -> int | None:
    """``generation_kwargs.max_new_tokens`` of an lmms-eval task file (its ``!function`` tags make
    yaml.safe_load refuse it, so the block is read as text)."""
    block = re.search(r"^generation_kwargs:\n((?:[ \t]+.*\n)+)", path.read_text(encoding="utf-8"), re.M)
    if block is None:
        return None
    found = re.search(r"^\s+max_new_tokens:\s*(\d+)", block.group(1), re.M)
    return None if found is None else int(found.group(1))


def test_table_matches_the_installed_lmms_eval_tasks():
    files = {"videomme": "videomme/videomme.yaml", "mlvu": "mlvu/mlvu_dev.yaml",
             "longvideobench": "longvideobench/longvideobench_val_v.yaml",
             "mvbench": "mvbench/_default_template_yaml"}
    for bench, rel in files.items():
        assert _yaml_max_new_tokens(TASKS / rel) == ANSWER_MAX_NEW_TOKENS[bench], rel
    assert ANSWER_MAX_NEW_TOKENS["videomme"] == 16
    # NExT-QA's task sets none; lmms-eval's llava_vid model then uses its own default
    assert _yaml_max_new_tokens(TASKS / "nextqa/nextqa_mc_test.yaml") is None
    llava_vid = (TASKS.parent / "models" / "simple" / "llava_vid.py").read_text(encoding="utf-8")
    assert f'gen_kwargs["max_new_tokens"] = {ANSWER_MAX_NEW_TOKENS["nextqa"]}' in llava_vid
    assert set(ANSWER_MAX_NEW_TOKENS) == {"videomme", "mlvu", "longvideobench", "mvbench", "nextqa", "vnbench"}


@pytest.fixture
def generate_calls(monkeypatch):
    """The ``max_new_tokens`` of every ``generate`` call of any Hugging Face model (observed, then the real
    call runs)."""
    seen: list[int] = []
    real = gen_utils.GenerationMixin.generate

    def recording(self, *args, **kwargs):
        seen.append(int(kwargs["max_new_tokens"]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(gen_utils.GenerationMixin, "generate", recording)
    return seen


SMALL = ["--set", "base_frames=8", "--budget", "40", "--set", "decouple_max_new_tokens=12",
         "--set", "scorer_batch_size=8", "--device", "cpu", "-q"]


@pytest.mark.parametrize("extra, answer_tokens", [([], 16), (["--set", "max_new_tokens=5"], 5)])
def test_quota_eval_answers_with_the_benchmark_length(tmp_path, tiny_llava_ov, tiny_qwen2_vl, generate_calls,
                                                      extra, answer_tokens):
    ann, root = write_benchmark(tmp_path / "vmme", 1, 1)
    argv = ["eval", "--benchmark", "videomme", "--annotations", str(ann), "--videos", str(root),
            "--out", str(tmp_path / "run"), "--base", str(tiny_llava_ov), "--scorer", str(tiny_qwen2_vl),
            *SMALL, *extra]
    assert main(argv) == 0
    # the chain of thought (12), then the answer: Video-MME's 16, or what --set asked for
    assert generate_calls == [12, answer_tokens]


def test_plugin_uses_the_task_length_and_the_table_for_tasks_without_one(tiny_qwen2_vl, tmp_path, generate_calls):
    from lmms_eval.api.instance import Instance

    from quota.integrations.lmms_eval import QuotaLMM
    from quota.testing.videos import make_video

    video = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10, size=(64, 48))
    lm = QuotaLMM(base=str(tiny_qwen2_vl), scorer="uniform", device="cpu", base_frames=4, budget=16,
                  benchmark_prompt=False)
    lm.task_dict = {"videomme": {"test": [{"video": str(video)}]}}
    gen_kwargs = {"max_new_tokens": _yaml_max_new_tokens(TASKS / "videomme/videomme.yaml"), "temperature": 0,
                  "do_sample": False, "until": ["\n\n"]}
    request = Instance(request_type="generate_until", idx=0, metadata={"task": "videomme", "doc_id": 0, "repeats": 1},
                       arguments=("What is shown?", gen_kwargs, lambda doc: [doc["video"]], 0, "videomme", "test"))
    lm.generate_until([request])
    assert generate_calls == [16]
    # lmms-eval gives nextqa_mc_test no max_new_tokens: the table's value (llava_vid's), not the preset's 64
    assert lm._pipeline_for({"until": ["\n\n"], "do_sample": False}, "nextqa_mc_test").config.max_new_tokens == 1024
    assert lm._pipeline_for({}, "some_other_task").config.max_new_tokens == 64
