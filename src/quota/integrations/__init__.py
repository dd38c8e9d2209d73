"""Bridges from other tools to quota.

Nothing here imports those tools at import time: each bridge lives in its own module and loads only when
the tool asks for it.

- :mod:`quota.integrations.lmms_eval`: the ``quota`` model of `lmms-eval`_ (``pip install quota[lmms-eval]``,
  then ``lmms-eval --model quota --model_args base=...,scorer=...,preset=paper --tasks videomme``).

lmms-eval finds the model through the entry point ``quota`` of the group ``lmms_eval.models`` (declared in
``pyproject.toml``), which points at :func:`lmms_eval_models`.

.. _lmms-eval: https://github.com/EvolvingLMMs-Lab/lmms-eval
"""

from __future__ import annotations

from typing import Any

#: The name the model is registered under in lmms-eval (``--model quota``).
LMMS_EVAL_MODEL_NAME = "quota"
#: ``module.Class`` of the lmms-eval model (imported by lmms-eval only when ``--model quota`` is used).
LMMS_EVAL_CLASS_PATH = "quota.integrations.lmms_eval.QuotaLMM"


def lmms_eval_models() -> list[Any]:
    """The model manifests lmms-eval's registry loads from our ``lmms_eval.models`` entry point.

    lmms-eval (0.7+) calls this while it builds its model registry; it must stay cheap, so it only
    describes where the class is and imports neither the class nor torch.
    """
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=LMMS_EVAL_MODEL_NAME, simple_class_path=LMMS_EVAL_CLASS_PATH)]


__all__ = ["LMMS_EVAL_MODEL_NAME", "LMMS_EVAL_CLASS_PATH", "lmms_eval_models"]
