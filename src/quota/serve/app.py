"""The HTTP side of ``quota serve``: a FastAPI app around a :class:`~quota.serve.service.Service`, and the
uvicorn server that runs it (in the foreground for the command line, on a thread for tests and notebooks).

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /health``.
FastAPI and uvicorn are the optional extra ``quota[serve]``; only this module imports them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import sys
import threading
import time
import traceback
from functools import partial
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..commands import error_line
from ..errors import QuotaError
from .protocol import RequestRefused, chunk_body, completion_body, completion_id, error_body, models_body, usage_chunk
from .service import Completion, Prepared, Service

log = logging.getLogger("quota.serve")


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code), status_code=status, headers=headers)


def error_response(exc: BaseException, hide: str | None = None) -> JSONResponse:
    """The OpenAI error body for ``exc`` with the command line's one-line message: a refusal's own status,
    400 for any other bad input, 500 (logged with its traceback) for a fault of the server. ``hide``: a folder
    whose path is cut from the message (the upload spool: clients see the upload's own file name)."""
    def line() -> str:
        text = error_line(exc)  # type: ignore[arg-type]
        return text.replace(hide.rstrip(os.sep) + os.sep, "") if hide else text

    if isinstance(exc, RequestRefused):
        return _error(exc.status, line(), exc.kind, exc.code, exc.headers)
    if isinstance(exc, QuotaError):
        return _error(400, line(), "invalid_request_error", type(exc).__name__)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return _error(500, f"quota: error: internal error ({type(exc).__name__}); the server keeps serving",
                  "server_error", "internal_error")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes (from the
    ``Content-Length`` header, before reading anything, or while reading a chunked body)."""
    too_big = RequestRefused(f"the request body is larger than the server's --max-upload-mb "
                             f"({limit / 2 ** 20:g} MB)", status=413, code="body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise RequestRefused("bad Content-Length header", code="invalid_request") from None
        if length > limit:
            raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


def build_app(service: Service) -> FastAPI:
    """The FastAPI app for ``service``. Every route under ``/v1`` checks the API key when one is set."""
    settings = service.settings
    app = FastAPI(title="quota serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    key = settings.api_key.encode() if settings.api_key else None
    hide = str(service.videos.spool)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if key is not None and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
                what = "missing" if not given else "wrong"
                return _error(401, f"quota: error: {what} API key: send the header 'Authorization: Bearer <key>'",
                              "authentication_error", "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, f"quota: error: {exc.detail} ({request.method} {request.url.path})",
                      "invalid_request_error", "not_found" if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, hide)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        worker = service.worker
        return {"status": "ok" if worker.alive else "stopped", "waiting": worker.waiting,
                "max_queue": worker.max_queue}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return models_body(settings.model, service.started)

    # Requests reading their body or being checked (this runs on one event loop: a plain counter will do).
    # Room for one more than the queue holds: no more bodies than that are in memory at once.
    arriving = [0]

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        try:
            if arriving[0] > service.worker.max_queue or service.worker.waiting >= service.worker.max_queue:
                raise service.worker.busy()  # refused before its body is read
            arriving[0] += 1
            try:
                try:  # a client that sends its body slowly holds a place: no longer than --timeout
                    body = await asyncio.wait_for(read_body(request, settings.max_upload_bytes), settings.timeout)
                except asyncio.TimeoutError:
                    raise RequestRefused(f"the request body did not arrive within the server's --timeout of "
                                         f"{settings.timeout:g} s", status=408, code="timeout") from None
                prepared = await run_in_threadpool(service.prepare, body)
                pieces: asyncio.Queue[str] | None = None
                on_text = None
                if prepared.request.stream:  # the worker hands each piece of the answer to this event loop
                    pieces, loop = asyncio.Queue(), asyncio.get_running_loop()
                    on_text = partial(loop.call_soon_threadsafe, pieces.put_nowait)
                future = service.submit(prepared, on_text)
            finally:
                arriving[0] -= 1
        except Exception as exc:
            return error_response(exc, hide)
        cid, created = completion_id(), int(time.time())
        if prepared.request.stream:
            return StreamingResponse(_events(service, prepared, future, pieces, cid, created),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            done = await _wait(service, prepared, future)
        except Exception as exc:
            return error_response(exc, hide)
        return completion_body(cid, settings.model, done.text, done.usage, done.finish_reason, done.extension, created)

    return app


async def _wait(service: Service, prepared: Prepared, future: Any) -> Completion:
    """The job's completion, or 504 when the request's time is up (a job still waiting is then dropped; a
    running one finishes, unseen)."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(service.deadline(prepared), 0.0))
    except asyncio.TimeoutError:
        future.cancel()
        raise RequestRefused(f"no answer within the server's --timeout of {service.settings.timeout:g} s",
                             status=504, kind="timeout_error", code="timeout") from None


async def _events(service: Service, prepared: Prepared, future: Any, pieces: asyncio.Queue[str] | None, cid: str,
                  created: int) -> AsyncIterator[str]:
    """The answer as server-sent events: the role at once, then each piece of the text as the model writes it
    (leading and trailing white space left out, so the pieces join to the plain reply's text), the finish reason
    with the ``quota`` extension, the usage when asked for, and ``[DONE]``. An error after the stream began (a
    timeout included) is sent as an ``error`` event."""
    model = service.settings.model
    sent = ""  # the text streamed so far
    held = ""  # white space not sent yet: it is sent only once more text follows it

    def delta(piece: str) -> str | None:
        nonlocal sent, held
        text = held + piece
        if not sent:
            text = text.lstrip()
        body = text.rstrip()
        held = text[len(body):]
        if not body:
            return None
        sent += body
        return _sse(chunk_body(cid, model, created, {"content": body}))

    try:
        yield _sse(chunk_body(cid, model, created, {"role": "assistant", "content": ""}))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(service.deadline(prepared), 0.0)
            job = asyncio.wrap_future(future)
            while pieces is not None and not job.done():
                get = asyncio.ensure_future(pieces.get())
                ready, _ = await asyncio.wait({get, job}, timeout=max(deadline - loop.time(), 0.0),
                                              return_when=asyncio.FIRST_COMPLETED)
                if get in ready:
                    event = delta(get.result())
                    if event:
                        yield event
                    continue
                get.cancel()
                if not ready:
                    break  # the request's time is up: _wait says so below
            done = await _wait(service, prepared, future)
        except Exception as exc:
            response = error_response(exc, str(service.videos.spool))
            yield f"data: {response.body.decode()}\n\n"
            yield "data: [DONE]\n\n"
            return
        while pieces is not None and not pieces.empty():
            event = delta(pieces.get_nowait())
            if event:
                yield event
        if done.text.startswith(sent) and len(done.text) > len(sent):  # what the pieces did not carry
            yield _sse(chunk_body(cid, model, created, {"content": done.text[len(sent):]}))
        yield _sse(chunk_body(cid, model, created, {}, done.finish_reason, quota=done.extension))
        if prepared.request.include_usage:
            yield _sse(usage_chunk(cid, model, created, done.usage))
        yield "data: [DONE]\n\n"
    finally:
        if not future.done():
            future.cancel()  # the client left: a job still waiting never runs


# ---------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------


def make_server(service: Service, host: str, port: int, *, log_level: str = "warning",
                graceful_seconds: float | None = None, on_started: Any = None) -> Any:
    """A uvicorn server for ``service`` whose shutdown (Ctrl+C, SIGTERM, ``handle_exit``) first fails the
    waiting requests with 503 and lets the running one finish. ``on_started(server)`` runs once it listens."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if on_started is not None and self.servers:
                on_started(self)

        def handle_exit(self, sig: int, frame: Any) -> None:  # the signal handler: shutdown begins
            # on another thread: a signal handler must not wait for the worker's lock
            threading.Thread(target=service.worker.close, kwargs={"wait": False}, daemon=True).start()
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again once it has stopped, which would end the process before the
            # spool is removed; the shutdown is complete and clean, so the command returns 0 instead
            self._captured_signals.clear()

    config = uvicorn.Config(build_app(service), host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=graceful_seconds, lifespan="off")
    return _Server(config)


def bound_port(server: Any) -> int:
    """The port a started uvicorn server listens on (useful after binding port 0)."""
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server is not listening")


class BackgroundServer:
    """``quota serve`` on a thread of this process, bound to ``host`` on a free port (``port=0``).

        with BackgroundServer(service) as srv:
            httpx.get(srv.url + "/v1/models")

    Leaving the block (or :meth:`stop`) shuts it down the way a signal does and stops the worker.
    """

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.server = make_server(service, host, port)
        self.host = host
        self._thread = threading.Thread(target=self.server.run, name="quota-serve", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("quota serve did not start")
            time.sleep(0.01)
        self.port = bound_port(self.server)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.handle_exit(0, None)
        self._thread.join(timeout)
        self.service.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["build_app", "error_response", "read_body", "make_server", "bound_port", "BackgroundServer"]
