"""The OpenAI chat-completions wire format, as ``quota serve`` reads and writes it. No web code, no models.

A request is read into a :class:`ChatRequest`: the question text, the one video part's URL, the
multiple-choice options found in the text, the per-request QuoTA settings (the ``"quota"`` extension
object, checked by :func:`quota.config.resolve_config` like every other entry point), ``max_tokens``,
``stream``. Responses are built as plain dicts in the shape the ``openai`` client parses.

Every refusal is a :class:`RequestRefused` (a :class:`~quota.errors.ConfigError`) carrying the HTTP status
and the OpenAI error ``type`` / ``code``; its message is the one line the command line would print.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..config import QuotaConfig, coerce_flag, resolve_config
from ..errors import ConfigError

#: How errors name settings given in a request's ``"quota"`` object.
SETTINGS_SOURCE = "request quota"
#: Keys of the ``"quota"`` object that are not :class:`QuotaConfig` fields.
REQUEST_FLAGS = ("baseline",)


class RequestRefused(ConfigError):
    """A request quota will not run. ``status`` is the HTTP status, ``kind`` the OpenAI error ``type``,
    ``code`` a short machine-readable reason."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error",
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.code = code
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions request, read and checked.

    Attributes:
        text: the user turn's text parts joined with newlines (what the model reads, verbatim).
        question: what decoupling and scoring read: ``text`` without its option lines, or all of it.
        options: option texts found as ``A. ...`` / ``(A) ...`` lines in ``text`` (``None``: none).
        video_url: the URL of the one ``video_url`` part.
        config: the settings for this request (the server's, changed by the ``"quota"`` object).
        changes: the fields the request changed (for logs and the response).
        baseline: answer without QuoTA (``"quota": {"baseline": true}``).
        stream: answer as server-sent events.
        include_usage: with ``stream``, send a last chunk with ``usage`` (``stream_options``).
        model: the model name the client asked for.
    """

    text: str
    question: str
    options: list[str] | None
    video_url: str
    config: QuotaConfig
    changes: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False
    stream: bool = False
    include_usage: bool = False
    model: str | None = None

    @property
    def formatted(self) -> str | None:
        """The text handed to the pipeline verbatim when it holds options (``None``: the pipeline writes the
        question itself, which for a question without options is the text)."""
        return self.text if self.options else None


def read_options(text: str) -> tuple[str, list[str] | None]:
    """``(question, options)`` from a prompt that lists its options one per line (``A. cat`` or ``(A) cat``,
    lettered in order): the same reader ``quota eval`` uses for benchmarks that embed their options. The
    options are handed to the pipeline as ``quota ask --options`` hands them (lettered by position)."""
    from ..eval.benchmarks import split_embedded_options

    question, options = split_embedded_options(text)
    if not options:
        return text.strip(), None
    return question or text.strip(), options


def _refuse(message: str, code: str = "invalid_request", status: int = 400) -> RequestRefused:
    return RequestRefused(message, status=status, code=code)


def _video_part_url(part: Mapping[str, Any]) -> str:
    value = part.get("video_url")
    url = value.get("url") if isinstance(value, Mapping) else value
    if not isinstance(url, str) or not url.strip():
        raise _refuse('a video_url part needs {"video_url": {"url": "data:video/mp4;base64,..."}}', "invalid_video_url")
    return url.strip()


def _user_turn(messages: Any) -> tuple[str, str]:
    """The text and the video URL of the one user message."""
    if not isinstance(messages, list) or not messages:
        raise _refuse("messages must be a non-empty list")
    roles = [m.get("role") if isinstance(m, Mapping) else None for m in messages]
    if roles != ["user"]:
        raise _refuse("quota answers one user message about one video; send a single message with role "
                      f"'user' (got roles {roles})", "unsupported_messages")
    content = messages[0].get("content")
    if isinstance(content, str):
        raise _refuse('the message has no video: send content as a list with a {"type": "video_url"} part '
                      'and a {"type": "text"} part', "missing_video")
    if not isinstance(content, list):
        raise _refuse("message content must be a list of parts")
    texts: list[str] = []
    videos: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "video_url":
            videos.append(_video_part_url(part))
        else:
            raise _refuse(f"unsupported content part {kind!r}: quota takes text parts and one video_url part "
                          "(frames sent as images are not a video)", "unsupported_content")
    if len(videos) != 1:
        raise _refuse(f"a request needs exactly one video_url part, got {len(videos)}", "missing_video")
    text = "\n".join(texts)
    if not text.strip():
        raise _refuse("the message has no question: add a text part", "missing_question")
    return text, videos[0]


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    given = [body.get(k) for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    if not given:
        return None
    value = given[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _refuse(f"max_tokens must be a whole number >= 1, got {value!r}")
    return value


def parse_chat_request(body: Any, config: QuotaConfig) -> ChatRequest:
    """Read a chat-completions request body (parsed JSON) against the server's ``config``.

    Fields quota does not use (``temperature``, ``top_p``, ``seed``, vLLM's ``media_io_kwargs`` ...) are
    ignored: decoding is always greedy and QuoTA chooses the frames.

    Raises:
        RequestRefused: a body quota cannot answer (no or several videos, several messages, ``n`` > 1, a
            non-object ``quota`` field), with status 400.
        ConfigError: an unknown setting or a bad value in ``"quota"`` (the config's own message).
    """
    if not isinstance(body, Mapping):
        raise _refuse("the request body must be a JSON object")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _refuse(f"n={n!r}: quota returns one choice per request (decoding is greedy)", "unsupported_n")
    text, url = _user_turn(body.get("messages"))
    extension = body.get("quota") or {}
    if not isinstance(extension, Mapping):
        raise _refuse('"quota" must be an object of settings, e.g. {"budget": 6272, "baseline": true}')
    changes = {str(k): v for k, v in extension.items() if k not in REQUEST_FLAGS}
    baseline = coerce_flag("baseline", extension.get("baseline", False), source=SETTINGS_SOURCE)
    max_tokens = _max_tokens(body)
    if max_tokens is not None and "max_new_tokens" not in changes:
        changes["max_new_tokens"] = max_tokens
    new_config = resolve_config(config, changes, source=SETTINGS_SOURCE)  # the one config path
    stream = coerce_flag("stream", body.get("stream", False), source="request")
    options_of_stream = body.get("stream_options") or {}
    include_usage = bool(isinstance(options_of_stream, Mapping) and options_of_stream.get("include_usage"))
    question, options = read_options(text)
    model = body.get("model")
    return ChatRequest(text=text, question=question, options=options, video_url=url, config=new_config,
                       changes=changes, baseline=baseline, stream=stream, include_usage=include_usage,
                       model=None if model is None else str(model))


# ---------------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------------


def completion_id() -> str:
    """A new, unique completion id (``chatcmpl-`` and 32 hex digits)."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def completion_body(cid: str, model: str, text: str, usage: dict[str, int], finish_reason: str,
                    extension: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice, ``usage`` and the ``quota`` extension."""
    return {
        "id": cid, "object": "chat.completion", "created": int(created or time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason,
                     "logprobs": None}],
        "usage": usage, "quota": extension,
    }


def chunk_body(cid: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice (``extra``: ``usage``, ``quota``)."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}


def usage_chunk(cid: str, model: str, created: int, usage: dict[str, int]) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, the usage."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": usage}


def models_body(model: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the one loaded base model."""
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "quota"}]}


__all__ = ["ChatRequest", "RequestRefused", "parse_chat_request", "read_options", "completion_id", "error_body",
           "completion_body", "chunk_body", "usage_chunk", "models_body", "SETTINGS_SOURCE"]
