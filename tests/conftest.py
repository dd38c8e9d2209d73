"""Shared pytest setup for quota's tests.

At import: no network for Hugging Face libraries, and one torch thread, also for the commands the tests
start (``QUOTA_TEST_THREADS`` overrides it). The tiny models' tensors are too small to gain from more
threads, and on the shared 2-core test machines two threads per process mostly wait on each other: the
scoring and pipeline tests ran 3-5 times slower with two.

Fixtures are grouped by topic below; add new ones under a heading of their own.
"""

from __future__ import annotations

import os

# Must happen before transformers / huggingface_hub are imported anywhere: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_THREADS = int(os.environ.get("QUOTA_TEST_THREADS", "1"))
os.environ["OMP_NUM_THREADS"] = str(_THREADS)  # read by torch at import, here and in child processes

from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(_THREADS)


# ---------------------------------------------------------------------------------------------------------
# Tiny real models (quota.testing.tiny_models)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Folder holding this session's tiny checkpoints.

    ``$QUOTA_TINY_CACHE`` when set (kept between runs), else a session temporary folder, which is also
    exported as ``$QUOTA_TINY_CACHE`` for the session so library code calling
    :func:`quota.testing.tiny_model_cache` shares the same checkpoints instead of building its own.
    """
    from quota.testing.tiny_models import CACHE_ENV

    preset = os.environ.get(CACHE_ENV)
    if preset:
        yield Path(preset)
        return
    root = tmp_path_factory.mktemp("tiny_models")
    os.environ[CACHE_ENV] = str(root)
    try:
        yield root
    finally:
        os.environ.pop(CACHE_ENV, None)


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight Qwen2-VL (model, processor, tokenizer, chat template)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("qwen2_vl")


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight Qwen2.5-VL."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight Qwen3-VL (patch 16, two deepstack levels)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("qwen3_vl")


@pytest.fixture(scope="session")
def tiny_smolvlm(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight SmolVLM2 (64x64 views, patch 8, pixel shuffle 2: 4x4 per frame)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("smolvlm")


@pytest.fixture(scope="session")
def tiny_internvl(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight InternVL3 (112x112 tiles, patch 14, pixel shuffle 0.5: 4x4 per tile)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("internvl")


@pytest.fixture(scope="session")
def tiny_glm4v(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight GLM-4.1V (Qwen2-VL-like tower: an 84x84 frame is 3x3 tokens)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("glm4v")


@pytest.fixture(scope="session")
def tiny_llava_ov(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight LLaVA-OneVision (SigLIP 84x84 / patch 14 + Qwen2)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("llava_onevision")


@pytest.fixture(scope="session")
def tiny_llava_video(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight LLaVA-Video: SigLIP 378x378 / patch 14 (the real 27x27 grid),
    in a folder named ``llava_video`` (so quota recognises it as LLaVA-Video: one newline per grid row)."""
    from quota.testing import tiny_model_cache

    return tiny_model_cache("llava_video")


# ---------------------------------------------------------------------------------------------------------
# Tiny dual encoders (quota.testing.tiny_clip)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_clip(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight CLIP (56x56 images, patch 14) with its processor."""
    from quota.testing.tiny_clip import tiny_clip_cache

    return tiny_clip_cache("clip")


@pytest.fixture(scope="session")
def tiny_siglip(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight SigLIP (56x56 images, patch 14) with its processor."""
    from quota.testing.tiny_clip import tiny_clip_cache

    return tiny_clip_cache("siglip")


@pytest.fixture(scope="session")
def tiny_siglip2(tiny_model_root: Path) -> Path:
    """Checkpoint folder of a tiny random-weight SigLIP 2 (at most 16 patches of 14 px) with its processor."""
    from quota.testing.tiny_clip import tiny_clip_cache

    return tiny_clip_cache("siglip2")
