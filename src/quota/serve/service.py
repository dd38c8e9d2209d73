"""What ``quota serve`` does with a request, without web code: read it, find its video, run the command
line's checks, queue it for the one model worker, and turn the :class:`~quota.types.Answer` into a
completion.

    service = Service(qa, ServeSettings(model="llava-hf/LLaVA-Video-7B-Qwen2-hf"), spool="/tmp/spool")
    prepared = service.prepare(body_bytes)      # RequestRefused / QuotaError for bad input
    future = service.submit(prepared)           # RequestRefused(429) when the queue is full
    completion = future.result()                # a Completion
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ..config import QuotaConfig
from .media import SPOOL_FILES, VideoRef, VideoStore
from .protocol import ChatRequest, RequestRefused, parse_chat_request
from .worker import Worker

#: Pipelines with other settings kept for reuse (they share the loaded models and the cached work).
VARIANTS = 8


@dataclass(frozen=True)
class ServeSettings:
    """How the server behaves (the ``quota serve`` options).

    Attributes:
        model: the model name clients send and ``GET /v1/models`` lists.
        api_key: the Bearer token every request must carry (``None``: no check).
        videos: folder requests may name files in (``None``: uploads only).
        max_queue: requests that may wait besides the running one.
        timeout: seconds a request may take, queue included, before the client gets 504.
        max_upload_bytes: largest request body accepted, in bytes.
        device, trust_remote_code: as loaded (for the per-request checks).
    """

    model: str
    api_key: str | None = None
    videos: str | None = None
    max_queue: int = 16
    timeout: float = 600.0
    max_upload_bytes: int = 512 * 1024 * 1024
    device: str | None = None
    trust_remote_code: bool = False


@dataclass
class Prepared:
    """A request that passed every check, with its video pinned."""

    request: ChatRequest
    video: VideoRef
    received: float


@dataclass(frozen=True)
class Completion:
    """The answer to one request, ready to send.

    Attributes:
        text: the generated text.
        usage: ``prompt_tokens`` (the request's text tokens plus the visual positions), ``completion_tokens``,
            ``total_tokens``, ``visual_tokens`` (the plan's tokens; ``None`` for the baseline). Text is counted with
            the base model's tokenizer (the answer re-tokenized, at most ``max_new_tokens``); the chat template
            and the time instruction are not counted.
        finish_reason: ``length`` when the answer used all of ``max_new_tokens``, else ``stop``.
        extension: the ``quota`` field: plan summary, timings, stages reused, seconds in the queue.
    """

    text: str
    usage: dict[str, Any]
    finish_reason: str
    extension: dict[str, Any]


def plan_extension(plan: Any) -> dict[str, Any]:
    """The plan summary a response carries: :meth:`Plan.summary` plus, per sampled frame, its frame number,
    time (s), score and tokens (0: not shown), and the positions of the kept frames."""
    return {
        **plan.summary(),
        "frames": list(plan.indices),
        "timestamps": [round(float(t), 3) for t in plan.timestamps],
        "scores": [float(s) for s in plan.scores],
        "tokens_per_frame": [int(h) * int(w) for h, w in plan.grids],
        "keep": list(plan.keep),
    }


class Service:
    """The loaded pipeline behind the endpoint.

    Args:
        qa: a :class:`~quota.pipeline.QuoTA` with a base model.
        settings: the server's settings.
        spool: folder for uploaded videos.
    """

    def __init__(self, qa: Any, settings: ServeSettings, spool: str | os.PathLike[str]) -> None:
        if getattr(qa, "adapter", None) is None:
            raise RequestRefused("quota serve answers questions and needs a base model")
        self.qa = qa
        self.settings = settings
        self.videos = VideoStore(spool, settings.videos, keep=max(SPOOL_FILES, settings.max_queue + 2))
        self.worker = Worker(settings.max_queue)
        self.started = int(time.time())
        self._variants: OrderedDict[str, Any] = OrderedDict()

    @property
    def config(self) -> QuotaConfig:
        return self.qa.config

    # ------------------------------------------------------------------ before the queue
    def prepare(self, body: bytes | str | dict[str, Any]) -> Prepared:
        """Read and check a request: its JSON, its settings, its model name, its video (opened, as the command
        line opens it before any model runs) and the budget against the sampled frames.

        Raises:
            RequestRefused: with the HTTP status to answer; QuotaError: any other bad input (400).
        """
        received = time.monotonic()
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise RequestRefused("the request body is not valid JSON", code="invalid_json") from None
        request = parse_chat_request(body, self.config)
        if request.model is not None and request.model != self.settings.model:
            raise RequestRefused(f"model {request.model!r} is not served here; this server runs "
                                 f"{self.settings.model!r} (GET /v1/models)", status=404, code="model_not_found")
        video = self.videos.open(request.video_url)
        try:
            self._preflight(request, video.path)
        except BaseException:
            video.release()
            raise
        return Prepared(request, video, received)

    def _preflight(self, request: ChatRequest, path: str) -> None:
        """The command line's checks (:func:`quota.commands.preflight`) on this request's question, options, video
        and settings; the models are loaded already, so none is looked up again."""
        from ..commands import preflight

        args = SimpleNamespace(video=path, question=request.question, options=request.options, report=None,
                               force=False, device=None, verbose=True, quiet=True,
                               trust_remote_code=self.settings.trust_remote_code)
        config = request.config.replace(scorer="uniform")  # the scorer is loaded: no source to look up
        preflight(args, config, base=None, outputs={}, baseline=request.baseline)

    # ------------------------------------------------------------------ the queue
    def submit(self, prepared: Prepared, on_text: Any = None) -> Any:
        """Queue ``prepared`` for the worker; returns a :class:`concurrent.futures.Future` of a
        :class:`Completion`. The video stays pinned until the job is over (or never runs). ``on_text`` gets each
        piece of the answer as it is generated (on the worker thread).

        Raises:
            RequestRefused: 429 (queue full) or 503 (shutting down); the video is released then.
        """
        remaining = self.deadline(prepared)
        try:
            if remaining <= 0:
                raise RequestRefused(f"no answer within the server's --timeout of {self.settings.timeout:g} s",
                                     status=504, kind="timeout_error", code="timeout")
            future = self.worker.submit(lambda: self.answer(prepared, on_text), timeout=remaining)
        except BaseException:
            prepared.video.release()
            raise
        future.add_done_callback(lambda _: prepared.video.release())
        return future

    def deadline(self, prepared: Prepared) -> float:
        """Seconds left of the request's ``timeout`` (from when it arrived)."""
        return self.settings.timeout - (time.monotonic() - prepared.received)

    # ------------------------------------------------------------------ on the worker
    def pipeline_for(self, config: QuotaConfig) -> Any:
        """The loaded pipeline, or one with ``config`` that shares its models and cached work."""
        if config == self.qa.config:
            return self.qa
        key = json.dumps(config.to_dict(), sort_keys=True, default=str)
        if key not in self._variants:
            self._variants[key] = self.qa.with_config(config=config)
            while len(self._variants) > VARIANTS:
                self._variants.popitem(last=False)
        self._variants.move_to_end(key)
        return self._variants[key]

    def answer(self, prepared: Prepared, on_text: Any = None) -> Completion:
        """Run one request (on the worker thread); ``on_text`` as in :meth:`quota.pipeline.QuoTA.answer`."""
        started = time.monotonic()
        request = prepared.request
        qa = self.pipeline_for(request.config)
        answer = qa.answer(prepared.video.path, request.question, request.options, baseline=request.baseline,
                           formatted=request.formatted, on_text=on_text)
        completion_tokens = min(self._count(answer.text), request.config.max_new_tokens)
        text_tokens = self._count(request.text)
        plan = answer.plan
        visual = None if plan is None else int(plan.tokens)
        usage = {
            "prompt_tokens": text_tokens + (0 if plan is None else int(plan.positions)),
            "completion_tokens": completion_tokens,
            "total_tokens": text_tokens + (0 if plan is None else int(plan.positions)) + completion_tokens,
            "visual_tokens": visual,
        }
        finish = "length" if completion_tokens >= request.config.max_new_tokens else "stop"
        extension = {
            "baseline": request.baseline,
            "choice": answer.choice,
            "options": request.options,
            "plan": None if plan is None else plan_extension(plan),
            "frames_shown": None if answer.frames is None else len(answer.frames),
            "timings": {k: round(float(v), 4) for k, v in answer.timings.items()},
            "reused": list(answer.reused),
            "queue_seconds": round(started - prepared.received, 4),
            "settings": {k: _jsonable(v) for k, v in request.changes.items()},
        }
        return Completion(text=answer.text, usage=usage, finish_reason=finish, extension=extension)

    def _count(self, text: str) -> int:
        tokenizer = getattr(getattr(self.qa.adapter, "processor", None), "tokenizer", None)
        if tokenizer is None:
            return len(text.split())
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ shutdown
    def close(self, wait: bool = True) -> None:
        """Refuse new requests, fail the waiting ones (503), let the running one finish."""
        self.worker.close(wait=wait)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


__all__ = ["Service", "ServeSettings", "Prepared", "Completion", "plan_extension", "VARIANTS"]
