"""quota: query-oriented visual token assignment (QuoTA) for long-video QA.

Light imports only here; model code loads on first use::

    from quota import QuoTA
    qa = QuoTA.from_pretrained("llava-hf/LLaVA-Video-7B-Qwen2-hf")
    print(qa.answer("video.mp4", "What is the man holding?").text)
"""

from __future__ import annotations

from typing import Any

from .config import PRESETS, QuotaConfig, get_config, resolve_config
from .errors import QuotaError
from .types import Answer, Clue, Frames, Plan

__version__ = "0.1.0"

_LAZY = {
    "QuoTA": ("quota.pipeline", "QuoTA"),
    "load_frames": ("quota.video", "load_frames"),
    "load_scorer": ("quota.scoring", "load_scorer"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'quota' has no attribute {name!r}")


__all__ = ["QuoTA", "QuotaConfig", "PRESETS", "get_config", "resolve_config", "QuotaError", "Answer", "Clue", "Frames", "Plan",
           "load_frames", "load_scorer", "__version__"]
