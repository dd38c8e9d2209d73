"""The ``quota`` model of lmms-eval: QuoTA around a Hugging Face video LVLM, run by lmms-eval's tasks.

    pip install "quota[lmms-eval]"
    lmms-eval --model quota \\
        --model_args base=llava-hf/LLaVA-Video-7B-Qwen2-hf,scorer=Qwen/Qwen2-VL-2B-Instruct,preset=paper \\
        --tasks videomme --batch_size 1 --output_path results/ --log_samples

lmms-eval finds the class through our ``lmms_eval.models`` entry point (see :mod:`quota.integrations`).
Each ``generate_until`` request carries ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)``; the
video comes from ``doc_to_visual(doc)``. For the paper's benchmarks the document is read by ``quota eval``'s
loader and the model reads the benchmark's LLaVA-Video prompt (see ``benchmark_prompt`` below); for other
tasks the whole context (question, options and the task's instruction) is passed to
:meth:`quota.pipeline.QuoTA.answer` as the question, without separate options.

``model_args`` (``key=value`` pairs, comma separated):

- ``base`` (alias ``pretrained``): base model id or folder (default: LLaVA-Video-7B-Qwen2, as the paper).
- ``scorer``: scorer id or folder, ``base`` or ``uniform`` (default: the preset's, Qwen2-VL-2B-Instruct).
- ``preset``: a :data:`quota.config.PRESETS` name (default ``paper``).
- ``device``, ``dtype``: where and how the models run (default: CUDA + bfloat16 when available).
- ``baseline``: ``true`` answers without QuoTA (the base model on ``baseline_frames`` uniform frames).
- ``trust_remote_code``: passed to ``from_pretrained`` (default ``false``).
- ``image_fps``: frame rate assumed for tasks that give frame images instead of a video (default 1.0).
- ``skip_bad_videos``: a missing or undecodable video gives an empty answer and a warning instead of
  ending the run (default ``true``).
- ``benchmark_prompt``: for the paper's benchmarks (``videomme``, ``mlvu_dev``, ``longvideobench_val_v``,
  ``mvbench_*``, ``nextqa_mc_test``) send the text LLaVA-Video is evaluated with (the tasks' ``llava_vid``
  prompt variant) whatever the model's name, the same text ``quota eval`` sends (default ``true``).
- ``plan_log``: a JSON-lines file that receives each sample's token plan and stage timings.
- ``quiet``: no progress bars inside the pipeline (default ``true``; the request bar stays).
- any :class:`~quota.config.QuotaConfig` field (``budget=6272``, ``resize=adaptive_pool``,
  ``max_frames=none`` ...), converted to the field's type.

Generation follows the task's ``gen_kwargs``: ``max_new_tokens`` (unless ``max_new_tokens`` is given in
``model_args``, which wins) and ``until`` (the text is cut at the first stop string). Decoding is always
greedy; sampling options are ignored with a warning. ``loglikelihood`` and multi-round generation are not
supported (video multiple-choice tasks use ``generate_until``).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

try:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms
except ImportError as _exc:  # pragma: no cover - only without lmms-eval
    raise ImportError(
        "quota's lmms-eval model needs the lmms-eval package: pip install 'quota[lmms-eval]'"
    ) from _exc

from loguru import logger as eval_logger
from tqdm import tqdm

from ..config import DEFAULT_BASE, QuotaConfig, coerce_flag, coerce_setting, resolve_config
from ..errors import ConfigError, VideoError
from ..runtime import choose_device, dist_info
from ..types import Frames
from ..video.frame_folder import IMAGE_EXTENSIONS, folder_index

#: How errors name the settings given to the plug-in.
_SOURCE = "lmms-eval model_args"
#: Sampling options of lmms-eval ``gen_kwargs`` that quota cannot honour (it decodes greedily).
_SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "num_beams")


# ---------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------


def cut_at_stop(text: str, until: str | Sequence[str] | None) -> str:
    """``text`` up to the earliest occurrence of any stop string in ``until`` (empty strings ignored)."""
    if until is None:
        return text
    stops = [until] if isinstance(until, str) else list(until)
    cut = len(text)
    for stop in stops:
        if isinstance(stop, str) and stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The frame images directly inside ``folder``, in natural order (``2.jpg`` before ``10.jpg``)."""
    return list(folder_index(folder).files)


def _is_pathlike(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))


def _is_image_path(item: Any) -> bool:
    return _is_pathlike(item) and os.fspath(item).lower().endswith(IMAGE_EXTENSIONS)


def _is_pil(item: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(item, Image.Image)


def flatten_visuals(visuals: Any) -> list[Any]:
    """What ``doc_to_visual`` returned, as a flat list (nested lists flattened, ``None`` entries dropped)."""
    if visuals is None:
        return []
    if not isinstance(visuals, (list, tuple)):
        return [visuals]
    flat: list[Any] = []
    for item in visuals:
        flat.extend(flatten_visuals(item))
    return flat


def frames_from_images(
    images: Sequence[Any],
    fps: float,
    *,
    n: int | None = None,
    sampling: dict[str, Any] | None = None,
    path: str | None = None,
) -> Frames:
    """:class:`Frames` from a sequence of frame images (PIL images or image paths), in the given order.

    The frames to keep are chosen as from a video of ``len(images)`` frames at ``fps`` frames per second:
    ``n`` uniform frames when ``n`` is given, else the paper's rule with ``sampling``
    (``base``, ``per_hour``, ``max_frames``; see :func:`quota.video.sample_indices`). Only the kept
    images are read. Images of another size than the first kept one are resized to it.

    Returns:
        frames with ``pixels`` ``[T, H, W, 3]`` uint8, timestamps ``index / fps`` seconds and duration
        ``len(images) / fps`` seconds.
    """
    from PIL import Image

    from ..video import sample_indices, uniform_indices

    total = len(images)
    if total == 0:
        raise VideoError("no frame images were given", path)
    if not (fps > 0 and np.isfinite(fps)):
        raise ConfigError(f"image_fps must be a finite number > 0, got {fps!r}")
    keep = uniform_indices(total, n) if n is not None else sample_indices(total, fps, **(sampling or {}))
    arrays: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for i in keep:
        item = images[i]
        try:
            image = item if isinstance(item, Image.Image) else Image.open(os.fspath(item))
            image = image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise VideoError(f"cannot read frame image: {exc}", item if _is_pathlike(item) else path) from None
        if size is None:
            size = image.size
        elif image.size != size:
            image = image.resize(size, Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    return Frames.from_arrays(np.stack(arrays), fps=float(fps), indices=keep, duration=total / float(fps),
                              path=path)


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------------------
# The lmms-eval model
# ---------------------------------------------------------------------------------------------------------


class QuotaLMM(lmms):
    """QuoTA as an lmms-eval "simple" model (``--model quota``).

    One process handles its shard of the requests (lmms-eval splits them by ``RANK``/``WORLD_SIZE``
    under ``accelerate launch`` or ``torchrun``); each process loads its own models on
    ``cuda:<LOCAL_RANK>``. Requests run one at a time, in lmms-eval's order; questions about the same
    video in a row reuse its decoded frames, vision features and scores.
    """

    is_simple = True

    def __init__(
        self,
        base: str | None = None,
        scorer: str | None = None,
        preset: str = "paper",
        device: str | None = None,
        dtype: str | None = None,
        baseline: Any = False,
        trust_remote_code: Any = False,
        quiet: Any = True,
        image_fps: Any = 1.0,
        skip_bad_videos: Any = True,
        plan_log: str | None = None,
        benchmark_prompt: Any = True,
        pretrained: str | None = None,
        batch_size: Any = 1,
        max_batch_size: Any = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        from ..pipeline import QuoTA

        if base is not None and pretrained is not None and str(base) != str(pretrained):
            raise ConfigError(f"lmms-eval model_args: base={base!r} and pretrained={pretrained!r} disagree; give one")
        base = base if base is not None else pretrained
        if base is None or str(base).strip() == "":
            base = DEFAULT_BASE
        self.baseline = coerce_flag("baseline", baseline, source=_SOURCE)
        self.quiet = coerce_flag("quiet", quiet, source=_SOURCE)
        self.skip_bad_videos = coerce_flag("skip_bad_videos", skip_bad_videos, source=_SOURCE)
        self.benchmark_prompt = coerce_flag("benchmark_prompt", benchmark_prompt, source=_SOURCE)
        try:
            self.image_fps = float(image_fps)
        except (TypeError, ValueError):
            raise ConfigError(f"lmms-eval model_args image_fps={image_fps!r}: expected a number") from None
        if not (self.image_fps > 0 and np.isfinite(self.image_fps)):
            raise ConfigError(f"lmms-eval model_args image_fps={image_fps!r}: must be > 0")
        if str(batch_size) not in ("1", "auto") and not str(batch_size).startswith("auto"):
            eval_logger.warning(f"quota answers one request at a time; batch_size={batch_size} is ignored")

        if scorer is not None:
            settings["scorer"] = scorer
        if self.baseline:
            settings["scorer"] = "uniform"  # the baseline scores nothing: load no scorer
        self._explicit_max_new_tokens = "max_new_tokens" in settings
        config = resolve_config(preset, settings, source=_SOURCE)  # checked before any model loads

        info = dist_info()
        self._rank, self._world_size = info.rank, info.world_size
        device = choose_device(device, info)

        self._qa = QuoTA.from_pretrained(
            base=str(base), preset=config, device=device, dtype=dtype, quiet=self.quiet,
            trust_remote_code=coerce_flag("trust_remote_code", trust_remote_code, source=_SOURCE),
        )
        self._config: QuotaConfig = self._qa.config
        #: Pipelines for other ``max_new_tokens`` values the tasks ask for (sharing the loaded models).
        self._by_max_new_tokens: dict[int, Any] = {config.max_new_tokens: self._qa}
        self.model_name = str(base)
        self.plan_log = self._rank_path(plan_log) if plan_log else None
        self._folder_frames: tuple[Any, Frames] | None = None
        self._warned_sampling = False

    # ------------------------------------------------------------------ properties lmms-eval reads
    @property
    def pipeline(self) -> Any:
        """The :class:`~quota.pipeline.QuoTA` that answers the requests."""
        return self._qa

    @property
    def config(self) -> QuotaConfig:
        """The settings as given (preset and ``model_args``); each request runs on a pipeline that shares
        the models and takes the task's ``max_new_tokens`` unless ``model_args`` fixed it."""
        return self._config

    @property
    def device(self) -> Any:
        import torch

        adapter = getattr(self._qa, "adapter", None)
        return adapter.device if adapter is not None else torch.device("cpu")

    # ------------------------------------------------------------------ requests
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "the quota model does not score continuations (loglikelihood): QuoTA answers by generating. "
            "Use a generate_until task (the video multiple-choice tasks, e.g. videomme, mlvu_dev, "
            "longvideobench_val_v, mvbench, nextqa_mc_test, are)."
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            "the quota model does not support multi-round generation (generate_until_multi_round); "
            "use single-turn generate_until tasks"
        )

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """One answer per request: QuoTA on the request's video with its context as the question."""
        answers: list[str] = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="QuoTA answering")
        for request in requests:
            answers.append(self._answer_request(request))
            bar.update(1)
        bar.close()
        return answers

    def _answer_request(self, request: Instance) -> str:
        args = request.args
        if len(args) != 6:
            raise ConfigError(
                f"quota: a generate_until request should carry (context, gen_kwargs, doc_to_visual, doc_id, "
                f"task, split); got {len(args)} arguments from task {getattr(request, 'task_name', '?')!r}"
            )
        context, gen_kwargs, doc_to_visual, doc_id, task, split = args
        gen_kwargs = dict(gen_kwargs or {})
        qa = self._pipeline_for(gen_kwargs, task)
        self._warn_sampling(gen_kwargs)
        doc = self.task_dict[task][split][doc_id]
        visuals = doc_to_visual(doc) if callable(doc_to_visual) else doc_to_visual
        question, options, formatted = self.question_of(task, doc, context)
        try:
            video = self._video_input(visuals, task)
            answer = qa.answer(video, question, options=options, baseline=self.baseline, formatted=formatted)
        except VideoError as exc:
            if not self.skip_bad_videos:
                raise
            eval_logger.warning(f"quota: {task} doc {doc_id}: {exc}; answering with an empty string")
            self._log_plan(task, split, doc_id, None, error=str(exc))
            return ""
        text = cut_at_stop(answer.text, gen_kwargs.get("until")).strip()
        self._log_plan(task, split, doc_id, answer, text=text)
        return text

    def question_of(self, task: str, doc: Any, context: str) -> tuple[str, list[str] | None, str | None]:
        """``(question, options, formatted)`` for one request.

        For the benchmarks of the paper (:func:`quota.eval.prompts.benchmark_of_task`) the document is
        read by ``quota eval``'s own loader: the question and options drive decoupling and scoring, and
        the model reads the benchmark text LLaVA-Video is evaluated with (the ``llava_vid`` prompt variant,
        :mod:`quota.eval.prompts`) instead of the context lmms-eval built for a model named ``quota``, so
        both routes send the same tokens. Other tasks (or ``benchmark_prompt=false``): lmms-eval's context
        is the question, as it is.
        """
        from ..eval.benchmarks import Item, item_from_doc
        from ..eval.prompts import benchmark_of_task

        bench = benchmark_of_task(str(task)) if self.benchmark_prompt else None
        if bench is None or not isinstance(doc, dict):
            return context, None, None
        source = f"{str(task)[len('mvbench_'):]}.json" if bench == "mvbench" else None
        item = item_from_doc(bench, doc, source=source)
        if not isinstance(item, Item) or not item.formatted:
            eval_logger.warning(f"quota: {task}: the document is not a usable question ({item}); "
                                "answering with lmms-eval's context")
            return context, None, None
        return item.question, list(item.options), item.formatted

    def _pipeline_for(self, gen_kwargs: dict[str, Any], task: Any = None) -> Any:
        """The pipeline for a request: the task's ``max_new_tokens`` unless ``model_args`` fixed it; for a
        task that sets none, the benchmark's own (:mod:`quota.eval.generation`: NExT-QA's 1024, what
        lmms-eval's ``llava_vid`` uses), else the preset's."""
        wanted = self._config.max_new_tokens
        if not self._explicit_max_new_tokens:
            if gen_kwargs.get("max_new_tokens") is not None:
                wanted = coerce_setting("max_new_tokens", gen_kwargs["max_new_tokens"], source="gen_kwargs")
            else:
                from ..eval.generation import answer_max_new_tokens
                from ..eval.prompts import benchmark_of_task

                wanted = answer_max_new_tokens(benchmark_of_task(str(task))) or wanted
        if wanted not in self._by_max_new_tokens:
            self._by_max_new_tokens[wanted] = self._qa.with_config(max_new_tokens=wanted)
        return self._by_max_new_tokens[wanted]

    def _warn_sampling(self, gen_kwargs: dict[str, Any]) -> None:
        if self._warned_sampling:
            return
        sampling = (
            str(gen_kwargs.get("do_sample", "")).strip().lower() in ("1", "true", "yes", "on")
            or _number(gen_kwargs.get("temperature"), 0.0) > 0
            or _number(gen_kwargs.get("num_beams"), 1.0) > 1
        )
        if sampling:
            self._warned_sampling = True
            eval_logger.warning(
                "quota decodes greedily; the task's sampling / beam options "
                f"({', '.join(k for k in _SAMPLING_KEYS if k in gen_kwargs)}) are ignored"
            )

    def _video_input(self, visuals: Any, task: str) -> str | Frames:
        """A video path, or :class:`Frames` built from frame images, for what ``doc_to_visual`` gave."""
        items = flatten_visuals(visuals)
        if not items:
            raise ConfigError(f"quota: task {task!r} gave no video for a request; QuoTA answers questions about videos")
        cfg = self._qa.config
        n = cfg.baseline_frames if self.baseline else None
        sampling = cfg.sampling
        if len(items) == 1 and _is_pathlike(items[0]):
            path = os.fspath(items[0])
            if not os.path.isdir(path):
                return path
            key = (os.path.abspath(path), os.stat(path).st_mtime_ns, n, tuple(sorted(sampling.items())),
                   self.image_fps)
            if self._folder_frames is None or self._folder_frames[0] != key:
                self._folder_frames = None
                frames = frames_from_images(image_files(path), self.image_fps, n=n, sampling=sampling, path=path)
                self._folder_frames = (key, frames)
            return self._folder_frames[1]
        if all(_is_image_path(i) for i in items) or all(_is_pil(i) for i in items):
            return frames_from_images(items, self.image_fps, n=n, sampling=sampling)
        kinds = sorted({type(i).__name__ for i in items})
        raise ConfigError(
            f"quota: task {task!r} gave {len(items)} visuals of type {', '.join(kinds)}; expected one video path, "
            "a folder of frame images, or a list of frame images"
        )

    # ------------------------------------------------------------------ plan log
    def _rank_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        if self._world_size > 1:
            p = p.with_name(f"{p.stem}.rank{self._rank}{p.suffix}")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _log_plan(self, task: str, split: str, doc_id: Any, answer: Any, *, text: str = "",
                  error: str | None = None) -> None:
        if self.plan_log is None:
            return
        record: dict[str, Any] = {"task": task, "split": split, "doc_id": doc_id, "baseline": self.baseline}
        if answer is not None:
            record.update(text=text, raw_text=answer.text, timings=dict(answer.timings),
                          frames_shown=None if answer.frames is None else len(answer.frames),
                          plan=None if answer.plan is None else answer.plan.to_dict())
        if error is not None:
            record["error"] = error
        with open(self.plan_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")

    # ------------------------------------------------------------------ clean-up
    def clean(self) -> None:
        """Free the models (lmms-eval calls this once every request has run)."""
        self._qa = None
        self._by_max_new_tokens = {}
        self._folder_frames = None
        gc.collect()
        super().clean()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Iterable):
        return list(value)
    return str(value)


__all__ = [
    "QuotaLMM",
    "IMAGE_EXTENSIONS",
    "cut_at_stop",
    "flatten_visuals",
    "frames_from_images",
    "image_files",
]
