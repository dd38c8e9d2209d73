"""``quota serve``: the OpenAI-compatible endpoint, driven by real clients against tiny real models.

The server runs on 127.0.0.1 on a free port, on a thread of this process (one loaded pipeline for the whole
file) or, for the command line and its shutdown, as a child process. Clients: the official ``openai``
package (plain and streaming), plain ``httpx``, raw sockets for bodies no client would send, and
lmms-eval's own ``openai_compatible`` model on a tiny Video-MME, compared with ``quota eval`` on the same
files. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="quota serve needs the extra: pip install 'quota[serve]'")
pytest.importorskip("uvicorn", reason="quota serve needs the extra: pip install 'quota[serve]'")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from quota.config import get_config  # noqa: E402
from quota.errors import ConfigError  # noqa: E402
from quota.serve.app import BackgroundServer  # noqa: E402
from quota.serve.media import VideoStore  # noqa: E402
from quota.serve.protocol import RequestRefused, parse_chat_request, read_options  # noqa: E402
from quota.serve.service import Service, ServeSettings  # noqa: E402
from quota.serve.worker import Worker  # noqa: E402
from quota.testing.videos import make_video  # noqa: E402

KEY = "test-key-123"
MODEL = "tiny-quota"
#: Small settings: a request takes a fraction of a second on one CPU thread.
SETTINGS = dict(base_frames=8, budget=40, max_new_tokens=4, decouple_max_new_tokens=16, scorer_batch_size=8)
FAST = ["--set", "base_frames=8", "--budget", "40", "--set", "max_new_tokens=4", "--set", "decouple_max_new_tokens=16",
        "--set", "scorer_batch_size=8", "--device", "cpu"]
MC_TEXT = ("What is shown in the video?\nA. a ball\nB. a box\n"
           "Answer with the option's letter from the given choices directly.")


def data_url(path: Path, media_type: str = "video/mp4") -> str:
    return f"data:{media_type};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def messages(url: str, text: str = MC_TEXT) -> list[dict]:
    parts = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": text}]
    return [{"role": "user", "content": parts}]


def body(url: str, text: str = MC_TEXT, **extra) -> dict:
    return {"model": MODEL, "messages": messages(url, text), **extra}


def read_reply(sock: socket.socket, first: bytes = b"") -> bytes:
    """One HTTP reply from ``sock``: the head and ``Content-Length`` bytes of body (or what came before EOF)."""
    data = first
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(rest) >= length:
                return data
        try:
            more = sock.recv(65536)
        except OSError:
            return data
        if not more:
            return data
        data += more


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------------------------------------
# Fixtures: videos, one pipeline, one server
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    folder = root / "videos"
    folder.mkdir()
    out = {"root": root, "folder": folder}
    out["clip"] = make_video(folder / "clip.mp4", n_frames=20, fps=10, size=(64, 48))
    out["other"] = make_video(folder / "other.mp4", n_frames=28, fps=10, size=(64, 48))
    (folder / "sub").mkdir()
    out["nested"] = make_video(folder / "sub" / "nested.mp4", n_frames=20, fps=10, size=(64, 48))
    out["fake"] = folder / "fake.mp4"
    out["fake"].write_bytes(b"this is not a video at all " * 40)
    out["secret"] = root / "secret.txt"
    out["secret"].write_text("outside the folder")
    (folder / "link.mp4").symlink_to(out["secret"])
    return out


@pytest.fixture(scope="module")
def qa(tiny_llava_ov, tiny_qwen2_vl):
    from quota import QuoTA

    return QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True, **SETTINGS)


@pytest.fixture(scope="module")
def server(qa, media):
    settings = ServeSettings(model=MODEL, api_key=KEY, videos=str(media["folder"]), max_queue=3, timeout=120,
                             max_upload_bytes=1 << 20)
    service = Service(qa, settings, media["root"] / "spool")
    with BackgroundServer(service) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def post(server, payload, *, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(server.url + "/v1/chat/completions", json=payload, headers=headers, timeout=120, **kwargs)


def still_serving(server) -> None:
    r = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == MODEL


# ---------------------------------------------------------------------------------------------------------
# Reading requests (no server)
# ---------------------------------------------------------------------------------------------------------


def test_requests_are_read_like_the_command_line():
    config = get_config("paper")
    question, options = read_options(MC_TEXT)
    assert question == "What is shown in the video?" and options == ["a ball", "a box"]
    assert read_options("Describe the video.") == ("Describe the video.", None)
    req = parse_chat_request(body("data:video/mp4;base64,AAAA", max_tokens=7,
                                  quota={"budget": "6272", "baseline": "true"}), config)
    assert (req.question, req.options, req.formatted) == ("What is shown in the video?", ["a ball", "a box"], MC_TEXT)
    assert req.config.budget == 6272 and req.config.max_new_tokens == 7 and req.baseline
    assert req.config.replace(budget=config.budget, max_new_tokens=config.max_new_tokens) == config
    plain = parse_chat_request(body("x.mp4", "Describe the video."), config)
    assert plain.options is None and plain.formatted is None and plain.config == config
    # the quota object's max_new_tokens wins over max_tokens
    both = parse_chat_request(body("x.mp4", max_tokens=9, quota={"max_new_tokens": 5}), config)
    assert both.config.max_new_tokens == 5
    # settings go through the config's own checks: the same messages as --set
    with pytest.raises(ConfigError, match="budgett: unknown setting"):
        parse_chat_request(body("x.mp4", quota={"budgett": 3}), config)
    with pytest.raises(ConfigError, match="resize"):
        parse_chat_request(body("x.mp4", quota={"resize": "nearest"}), config)
    bad = [
        ({"messages": []}, "non-empty"),
        ({"messages": [{"role": "system", "content": "be brief"}, *messages("x.mp4")]}, "one user message"),
        ({"messages": [{"role": "user", "content": "no video here"}]}, "no video"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]}, "exactly one video_url"),
        ({"messages": [{"role": "user", "content": messages("a.mp4")[0]["content"] + messages("b.mp4")[0]["content"]}]},
         "exactly one video_url part, got 2"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
        ({"messages": messages("x.mp4", "  ")}, "no question"),
        ({**body("x.mp4"), "n": 2}, "one choice"),
        ({**body("x.mp4"), "quota": [1]}, "must be an object"),
        ({**body("x.mp4"), "max_tokens": 0}, "max_tokens"),
    ]
    for payload, message in bad:
        with pytest.raises(RequestRefused, match=message) as info:
            parse_chat_request(payload, config)
        assert info.value.status == 400


def test_the_parser_imports_no_web_stack_and_no_torch():
    code = ("import sys; from quota.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_video_store_reads_only_uploads_and_the_folder(tmp_path, media):
    store = VideoStore(tmp_path / "spool", media["folder"], keep=2)
    a, b = store.open(data_url(media["clip"])), store.open(data_url(media["clip"]))
    assert a.path == b.path and a.uploaded and Path(a.path).read_bytes() == media["clip"].read_bytes()
    mtime = os.stat(a.path).st_mtime_ns
    c = store.open(data_url(media["clip"]))
    assert c.path == a.path and os.stat(a.path).st_mtime_ns == mtime  # never rewritten
    assert store.open("clip.mp4").path == os.path.realpath(media["clip"])
    assert store.open(media["nested"].as_uri()).path == os.path.realpath(media["nested"])
    assert store.open(str(media["nested"])).path == os.path.realpath(media["nested"])
    refused = {
        "../secret.txt": 403, str(media["secret"]): 403, media["secret"].as_uri(): 403, "link.mp4": 403,
        "sub/../../secret.txt": 403, "/etc/passwd": 403, "missing.mp4": 404, "http://127.0.0.1/x.mp4": 400,
        "https://example.com/v.mp4": 400, "ftp://example.com/v.mp4": 400, "file://otherhost/v.mp4": 400,
        "data:video/mp4,notbase64": 400, "data:video/mp4;base64,@@@": 400, "data:image/png;base64,AAAA": 400,
        "clip\x00.mp4": 400,
    }
    for url, status in refused.items():
        with pytest.raises(RequestRefused) as info:
            store.open(url)
        assert info.value.status == status, url
    with pytest.raises(RequestRefused, match="reads no files") as info:
        VideoStore(tmp_path / "spool2", None).open("clip.mp4")
    assert info.value.status == 403
    # the spool keeps `keep` uploads besides the pinned ones, and removes none in use
    refs = [store.open("data:video/mp4;base64," + base64.b64encode(bytes([i]) * 10).decode()) for i in range(4)]
    assert all(os.path.exists(r.path) for r in refs) and len(store.spooled()) == 5
    for ref in (a, b, c, *refs):
        ref.release()
    assert store.spooled() == [refs[2].path, refs[3].path] and not os.path.exists(a.path)
    again = store.open(data_url(media["clip"]))  # written again, pinned; the oldest unpinned one goes
    again.release()
    assert store.spooled() == [refs[3].path, a.path]
    assert sorted(os.listdir(tmp_path / "spool")) == sorted(os.path.basename(p) for p in store.spooled())


def test_worker_queue_refuses_expires_and_shuts_down():
    gate, started = threading.Event(), threading.Event()
    worker = Worker(max_queue=2)

    def slow():
        started.set()
        gate.wait(10)
        return "slow"

    first = worker.submit(slow, timeout=10)
    assert started.wait(10)
    queued = [worker.submit(lambda i=i: i, timeout=10) for i in range(2)]
    with pytest.raises(RequestRefused) as info:
        worker.submit(lambda: "too many", timeout=10)
    assert info.value.status == 429 and int(info.value.headers["Retry-After"]) >= 1
    gate.set()
    assert first.result(10) == "slow" and [f.result(10) for f in queued] == [0, 1]
    # a job whose time ran out while it waited never runs
    gate.clear()
    started.clear()
    ran = []
    blocker = worker.submit(slow, timeout=10)
    assert started.wait(10)
    late = worker.submit(lambda: ran.append(1), timeout=0.01)
    time.sleep(0.05)
    gate.set()
    blocker.result(10)
    with pytest.raises(RequestRefused) as info:
        late.result(10)
    assert info.value.status == 504 and ran == []
    # shutdown: the running job finishes, the waiting one fails with 503, new ones are refused with 503
    gate.clear()
    started.clear()
    running = worker.submit(slow, timeout=10)
    assert started.wait(10)
    waiting = worker.submit(lambda: ran.append(2), timeout=10)
    closer = threading.Thread(target=worker.close)
    closer.start()
    with pytest.raises(RequestRefused) as info:
        waiting.result(10)
    assert info.value.status == 503
    gate.set()
    closer.join(10)
    assert running.result(10) == "slow" and ran == [] and not worker.alive
    with pytest.raises(RequestRefused) as info:
        worker.submit(lambda: 1, timeout=10)
    assert info.value.status == 503
    stats = worker.stats
    assert (stats.completed, stats.expired, stats.dropped, stats.refused) == (5, 1, 1, 2)


# ---------------------------------------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------------------------------------


def test_openai_client_plain_and_streaming(server, client, qa, media):
    assert [m.id for m in client.models.list().data] == [MODEL]
    url = data_url(media["clip"])
    reply = client.chat.completions.create(model=MODEL, messages=messages(url))
    text = reply.choices[0].message.content
    ext = reply.model_extra["quota"]
    plan = ext["plan"]
    assert sum(plan["tokens_per_frame"]) == plan["tokens"] == reply.usage.model_extra["visual_tokens"]
    assert set(ext["timings"]) >= {"decode", "decouple", "score", "encode", "generate", "total"}
    assert reply.usage.prompt_tokens > plan["tokens"] and 1 <= reply.usage.completion_tokens <= 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.model == MODEL
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"

    # streaming: role first, the same text, the finish reason with the extension, then the usage
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages(url), stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].model_extra["quota"]["plan"]["frames"] == plan["frames"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1
    # the uploaded bytes were cached: the stream reused every stage but generation
    assert set(finish[0].model_extra["quota"]["reused"]) >= {"decode", "decouple", "score", "encode"}

    # the same answer as the Python API on the same file
    direct = qa.answer(str(media["clip"]), "What is shown in the video?", ["a ball", "a box"], formatted=MC_TEXT)
    assert text == direct.text and ext["choice"] == direct.choice and ext["options"] == ["a ball", "a box"]
    assert plan["frames"] == direct.plan.indices and plan["scores"] == pytest.approx(direct.plan.scores)
    assert plan["tokens_per_frame"] == [h * w for h, w in direct.plan.grids] and plan["budget"] == 40

    # errors arrive as the client's typed exceptions with the command line's line
    with pytest.raises(openai.BadRequestError, match="quota: error: request quota budgett: unknown setting"):
        client.chat.completions.create(model=MODEL, messages=messages(url), extra_body={"quota": {"budgett": 1}})
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=messages(url))
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_httpx_settings_baseline_and_files(server, qa, media):
    url = data_url(media["other"])
    default = post(server, body(url, "Describe the video."))
    assert default.status_code == 200, default.text
    half = post(server, body(url, "Describe the video.", quota={"budget": 16}))
    assert half.status_code == 200, half.text
    plan = half.json()["quota"]["plan"]
    assert plan["budget"] == 16 and plan["tokens"] <= 16 < default.json()["quota"]["plan"]["tokens"]
    assert half.json()["quota"]["settings"] == {"budget": 16}
    assert {"decode", "decouple", "score"} <= set(half.json()["quota"]["reused"])  # same bytes, other budget
    base = post(server, body(url, "Describe the video.", quota={"baseline": True, "baseline_frames": 3}))
    assert base.status_code == 200, base.text
    ext = base.json()["quota"]
    assert ext["baseline"] is True and ext["plan"] is None and ext["frames_shown"] == 3
    assert base.json()["usage"]["visual_tokens"] is None
    direct = qa.with_config(baseline_frames=3).answer(str(media["other"]), "Describe the video.", baseline=True)
    assert base.json()["choices"][0]["message"]["content"] == direct.text
    # the scorer model cannot change per request (the loaded one is shared)
    swap = post(server, body(url, quota={"scorer": "/some/other/scorer"}))
    assert swap.status_code == 400 and "cannot swap the scorer" in swap.json()["error"]["message"]
    # a file of --videos: by name, by path, by file:// URL; the same answer as its uploaded bytes
    texts = set()
    for ref in ("clip.mp4", str(media["clip"]), media["clip"].as_uri(), data_url(media["clip"])):
        r = post(server, body(ref))
        assert r.status_code == 200, r.text
        texts.add(r.json()["choices"][0]["message"]["content"])
    assert len(texts) == 1


def test_hostile_input_gets_one_clear_error_and_the_server_keeps_serving(server, media):
    url = data_url(media["clip"])
    cases = [
        (body("../secret.txt"), 403, "outside the --videos folder"),
        (body(str(media["secret"])), 403, "outside the --videos folder"),
        (body("link.mp4"), 403, "outside the --videos folder"),
        (body(media["secret"].as_uri()), 403, "outside the --videos folder"),
        (body("http://127.0.0.1:9/video.mp4"), 400, "not fetched"),
        (body("https://example.com/video.mp4"), 400, "not fetched"),
        (body("fake.mp4"), 400, "fake.mp4"),
        (body(data_url(media["fake"])), 400, hashlib.sha256(media["fake"].read_bytes()).hexdigest() + ".mp4"),
        (body(url, quota={"no_such_setting": 1}), 400, "no_such_setting: unknown setting"),
        (body(url, quota={"budget": -5}), 400, "budget"),
        (body(url, quota={"budget": 2}), 400, "less than one token for each of the 8 sampled frames"),
        (body("missing.mp4"), 404, "no such file"),
        ({"messages": "hello"}, 400, "non-empty list"),
    ]
    for payload, status, message in cases:
        r = post(server, payload)
        assert r.status_code == status, (payload, r.text)
        error = r.json()["error"]
        assert message in error["message"] and error["message"].startswith("quota: error: ")
        assert "\n" not in error["message"] and "Traceback" not in error["message"]
        assert str(server.service.videos.spool) not in error["message"]  # the spool's path stays private
        still_serving(server)
    # not JSON, no key, a wrong key, a route that does not exist: the same error body
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    for key, what in ((None, "missing API key"), ("wrong-key", "wrong API key"), (KEY + "x", "wrong API key")):
        r = post(server, body(url), key=key)
        assert r.status_code == 401 and what in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer" and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
    r = httpx.get(server.url + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # nothing outside the folder was copied into a response, and the secret is untouched
    assert media["secret"].read_text() == "outside the folder"
    # a 2 GB body: refused from its Content-Length before a byte of it is read ...
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {2 * 1024 ** 3}\r\n\r\n".encode() + b"{" * 1000)
        head = read_reply(s).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413") and "max-upload-mb" in head
    # ... and, sent in chunks without a length, cut off once it passes the limit (1 MB here)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b"a" * (1 << 16))
        reply = b""
        while sent < 2 * 1024 ** 3:
            if select.select([s], [], [], 0.001)[0]:  # the server answered: stop sending
                break
            try:
                s.sendall(chunk)
            except OSError:  # the server closed the connection after answering
                break
            sent += 1 << 16
        reply = read_reply(s, reply)
    assert reply.startswith(b"HTTP/1.1 413") and b"max-upload-mb" in reply
    assert sent < 8 * (1 << 20)  # it stopped within a few MB of the 1 MB limit
    still_serving(server)
    ok = post(server, body(url))
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


def test_bounded_load_answers_or_refuses_every_request(server, media):
    """8 clients x 10 requests on loopback against a queue of 3: each request gets exactly one reply, 200 or
    429 with Retry-After; every answer equals the sequential one; memory and the spool stay bounded."""
    service = server.service
    jobs = [(data_url(media["clip"]), MC_TEXT), (data_url(media["other"]), MC_TEXT),
            (data_url(media["clip"]), "Describe the video."), ("other.mp4", "Describe the video.")]
    reference = []
    for ref, text in jobs:  # sequential answers (also warms the caches and the allocator)
        r = post(server, body(ref, text))
        assert r.status_code == 200, r.text
        reference.append(r.json()["choices"][0]["message"]["content"])
    before_stats = (service.worker.stats.completed, service.worker.stats.refused)
    rss_before = rss_mb()
    results: dict[tuple[int, int], list[httpx.Response]] = {}
    lock = threading.Lock()

    def run_client(c: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as http:
            for i in range(10):
                ref, text = jobs[(c + i) % len(jobs)]
                r = http.post("/v1/chat/completions", json=body(ref, text))
                with lock:
                    results.setdefault((c, i), []).append(r)

    threads = [threading.Thread(target=run_client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(results) == [(c, i) for c in range(8) for i in range(10)]
    assert all(len(v) == 1 for v in results.values())  # none lost, none answered twice
    answered = refused = 0
    ids = set()
    for (c, i), (r,) in results.items():
        assert r.status_code in (200, 429), r.text
        if r.status_code == 429:
            refused += 1
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["type"] == "rate_limit_error"
            continue
        answered += 1
        data = r.json()
        ids.add(data["id"])
        assert data["choices"][0]["message"]["content"] == reference[(c + i) % len(jobs)]
    assert answered >= 8 and len(ids) == answered
    # the worker ran exactly the answered requests and refused exactly the 429s
    assert (service.worker.stats.completed - before_stats[0], service.worker.stats.refused - before_stats[1]) == (
        answered, refused)
    assert service.worker.waiting == 0
    assert rss_mb() - rss_before < 300  # bounded: no per-request growth (80 requests of 1-2 uploads each)
    assert len(service.videos.spooled()) <= service.videos.keep
    still_serving(server)


def test_timeouts_and_server_faults(qa, media, tmp_path):
    from quota.serve.app import error_response

    # a fault that is not bad input: 500, one line, the type named, no traceback in the body
    fault = error_response(RuntimeError("CUDA out of memory\nmore"))
    assert fault.status_code == 500
    message = json.loads(fault.body)["error"]["message"]
    assert message.startswith("quota: error: internal error (RuntimeError)") and "\n" not in message
    # a request that cannot be answered within --timeout: 504, plain or as an error event in a stream
    service = Service(qa, ServeSettings(model=MODEL, timeout=1.0), tmp_path / "spool")
    gate = threading.Event()
    with BackgroundServer(service) as srv:
        busy = service.worker.submit(lambda: gate.wait(30), timeout=30)  # the worker is taken meanwhile
        start = time.monotonic()
        r = httpx.post(srv.url + "/v1/chat/completions", json=body(data_url(media["clip"])), timeout=60)
        assert r.status_code == 504 and "--timeout of 1 s" in r.json()["error"]["message"]
        assert 1.0 <= time.monotonic() - start < 10
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model=MODEL, messages=messages(data_url(media["clip"])), stream=True)
        with pytest.raises(openai.APIError, match="--timeout"):
            list(stream)
        # a body that never finishes arriving holds its place no longer than --timeout
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
            reply = read_reply(s)
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive" in reply
        gate.set()
        busy.result(30)
        assert httpx.get(srv.url + "/health", timeout=30).json()["status"] == "ok"
        stats, deadline = service.worker.stats, time.monotonic() + 10
        while stats.cancelled + stats.expired < 2 and time.monotonic() < deadline:  # the worker skips them
            time.sleep(0.01)
        assert (stats.cancelled + stats.expired, stats.completed, service.worker.waiting) == (2, 1, 0)
    assert service.worker.stats.completed == 1 and not service.worker.alive  # only the blocking job ran


# ---------------------------------------------------------------------------------------------------------
# The command line: start, answer, shut down cleanly
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quota_serve_command_answers_and_shuts_down_cleanly(tiny_llava_ov, media, tmp_path):
    from quota.cli import main

    assert main(["serve", "--videos", str(tmp_path / "none"), "--base", str(tiny_llava_ov)]) == 2
    assert main(["serve", "--max-queue", "0", "--base", str(tiny_llava_ov)]) == 2
    scratch = tmp_path / "tmp"  # the server's temporary files (the upload spool) go here
    scratch.mkdir()
    env = dict(os.environ, QUOTA_API_KEY=KEY, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TMPDIR=str(scratch))
    cmd = [sys.executable, "-m", "quota.cli", "serve", "--base", str(tiny_llava_ov), "--scorer", "uniform",
           "--port", "0", "--videos", str(media["folder"]), "--served-model-name", MODEL, "--max-queue", "4", *FAST]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"quota serve: {MODEL} on http://127.0.0.1:"), line + proc.stderr.read()
        base_url = line.split(" on ")[1].split()[0]
        client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120)
        first = client.chat.completions.create(model=MODEL, messages=messages(data_url(media["clip"])))
        assert first.choices[0].message.content and first.model_extra["quota"]["plan"]["sampled"] == 8
        assert len(list(scratch.glob("quota-serve-*/*.mp4"))) == 1  # the upload, under its content hash
        # four long requests, then SIGTERM once one runs and three wait
        replies: list[httpx.Response | Exception] = []
        slow = body("clip.mp4", "Describe the video.", quota={"max_new_tokens": 48})

        def send() -> None:
            try:
                replies.append(httpx.post(base_url + "/chat/completions", json=slow, timeout=120,
                                          headers={"Authorization": f"Bearer {KEY}"}))
            except Exception as exc:  # noqa: BLE001 - recorded and checked below
                replies.append(exc)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        health = base_url.rsplit("/v1", 1)[0] + "/health"
        deadline = time.monotonic() + 60
        while httpx.get(health, timeout=10).json()["waiting"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    statuses = sorted(r.status_code for r in replies if isinstance(r, httpx.Response))
    assert len(statuses) == 4, replies  # every request got an answer: none hung or lost its connection
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    for r in replies:
        if r.status_code == 503:
            message = r.json()["error"]["message"]
            assert ("server shut down" in message or "shutting down" in message) and r.headers["retry-after"] == "1"
    err = proc.stderr.read()
    assert f"stopped; {1 + statuses.count(200)} requests answered" in err
    assert "Traceback" not in err
    assert list(scratch.glob("quota-serve-*")) == []  # the spool went with the server


# ---------------------------------------------------------------------------------------------------------
# lmms-eval's openai_compatible model against the server, and quota eval on the same Video-MME
# ---------------------------------------------------------------------------------------------------------


TASK_YAML = """task: quota_tiny_videomme
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.videomme_doc_to_visual
doc_to_text: !function utils.videomme_doc_to_text
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: 4
  temperature: 0
  do_sample: false
process_results: !function utils.videomme_process_results
metric_list:
  - metric: videomme_perception_score
    aggregation: !function utils.videomme_aggregate_results
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: "The best answer is:"
"""


def write_videomme(root: Path) -> tuple[Path, Path, Path, list[dict]]:
    """A tiny Video-MME in the published layout (``videomme/data/<videoID>.mp4`` under ``HF_HOME``, where
    lmms-eval's own ``videomme_doc_to_visual`` looks) and an lmms-eval task that reads it offline with the
    installed Video-MME hooks and LLaVA-Video's prompt variant (``quota eval``'s text)."""
    folder = root / "hf" / "videomme"
    (folder / "data").mkdir(parents=True)
    rows = []
    for v in range(2):
        make_video(folder / "data" / f"vid{v}.mp4", n_frames=20 + 4 * v, fps=10, size=(64, 48))
        for q in range(2):
            rows.append({
                "video_id": f"{v:03d}", "videoID": f"vid{v}", "question_id": f"{v:03d}-{q}", "duration": "short",
                "domain": "Knowledge", "sub_category": "Humanity & History", "url": "https://example.com",
                "task_type": ["Counting Problem", "Object Recognition"][q],
                "question": f"How many squares are there in part {q}?",
                "options": ["A. one", "B. two", "C. three", "D. four"], "answer": "ABCD"[(v + q) % 4],
            })
    annotations = folder / "videomme.json"
    annotations.write_text(json.dumps(rows), encoding="utf-8")
    data = root / "videomme.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = root / "task"
    task.mkdir()
    (task / "utils.py").write_text("from lmms_eval.tasks.videomme.utils import (  # noqa: F401\n"
                                   "    videomme_aggregate_results, videomme_doc_to_text, videomme_doc_to_visual,\n"
                                   "    videomme_process_results)\n")
    (task / "quota_tiny_videomme.yaml").write_text(TASK_YAML.format(data=data))
    return folder, annotations, task, rows


class RecordingService(Service):
    """The service, keeping what each request handed the pipeline (no model is replaced)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple] = []

    def answer(self, prepared, on_text=None):
        done = super().answer(prepared, on_text)
        self.seen.append((prepared.request, prepared.video.path, done))
        return done


@pytest.mark.slow
def test_lmms_eval_openai_compatible_matches_quota_eval(qa, tiny_llava_ov, tiny_qwen2_vl, tmp_path):
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'quota[lmms-eval]')")
    from quota.cli import main
    from quota.eval import load_benchmark, open_run
    from quota.eval.pipeline_answer import PipelineAnswer

    folder, annotations, task, rows = write_videomme(tmp_path)
    service = RecordingService(qa, ServeSettings(model=MODEL, api_key=KEY, videos=str(folder), max_queue=8),
                               tmp_path / "spool")
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    with BackgroundServer(service) as srv:
        model_args = (f"model={MODEL},base_url={srv.url}/v1,api_key={KEY},pass_video_url=True,num_concurrent=2,"
                      "max_retries=1,timeout=120")
        cmd = [sys.executable, "-m", "lmms_eval", "--model", "openai_compatible", "--model_args", model_args,
               "--tasks", "quota_tiny_videomme", "--include_path", str(task), "--batch_size", "1",
               "--output_path", str(tmp_path / "lmms"), "--log_samples"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0 and "Error during evaluation" not in proc.stdout + proc.stderr, log
    assert "LMMS_EVAL_REQUEST_FAILED" not in proc.stdout + proc.stderr, log
    (results_file,) = (tmp_path / "lmms").rglob("*_results.json")
    lmms_results = json.loads(results_file.read_text())["results"]["quota_tiny_videomme"]
    lmms_score = lmms_results["videomme_perception_score,none"]
    (samples_file,) = (tmp_path / "lmms").rglob("*_samples_quota_tiny_videomme.jsonl")
    samples = {rows[s["doc_id"]]["question_id"]: s for s in map(json.loads, samples_file.read_text().splitlines())}

    # quota eval on the same files, models and settings
    run = tmp_path / "quota_eval"
    assert main(["eval", "--benchmark", "videomme", "--annotations", str(annotations), "--videos", str(folder),
                 "--out", str(run), "--base", str(tiny_llava_ov), "--scorer", str(tiny_qwen2_vl), *FAST]) == 0
    with open_run(run) as store:
        ours = {r.sample_id: r.to_dict() for r in store.results()}
    metrics = json.loads((run / "metrics.json").read_text())["overall"]
    assert sorted(samples) == sorted(ours) == [r["question_id"] for r in rows]
    # lmms-eval reports percent; quota eval a fraction
    assert lmms_score == pytest.approx(100 * metrics["accuracy"])
    bench = {s.id: s for s in load_benchmark("videomme", annotations, folder)}
    seen = {}
    for request, path, done in service.seen:
        qid = next(i for i, s in bench.items() if s.formatted == request.text and os.path.samefile(s.video, path))
        seen[qid] = (request, path, done)
    assert sorted(seen) == sorted(ours)
    for qid, row in ours.items():
        sample, (request, path, done) = bench[qid], seen[qid]
        # the model read the same words about the same file, and wrote the same answer
        assert request.text == PipelineAnswer(qa).formatted(sample) == samples[qid]["input"]
        assert request.options == list(sample.options) and os.path.samefile(path, sample.video)
        assert done.text == row["prediction"] == samples[qid]["filtered_resps"]
        assert done.extension["choice"] == row["choice"]
        plan = done.extension["plan"]
        assert (plan["sampled"], plan["kept"], plan["tokens"]) == (row["plan"]["sampled"], row["plan"]["kept"],
                                                                    row["plan"]["tokens"])


def test_a_stream_carries_the_answer_piece_by_piece(tiny_qwen2_vl, media):
    """``stream: true`` sends the text as the model writes it: several content chunks that join to the plain
    reply's text (a base whose random output decodes to text, so it arrives in pieces)."""
    from quota import QuoTA

    qa = QuoTA.from_pretrained(str(tiny_qwen2_vl), scorer="base", device="cpu", quiet=True,
                               **{**SETTINGS, "max_new_tokens": 16})
    settings = ServeSettings(model=MODEL, api_key=KEY, videos=str(media["folder"]), max_queue=2, timeout=120,
                             max_upload_bytes=1 << 20)
    with BackgroundServer(Service(qa, settings, media["root"] / "spool-stream")) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
        url = data_url(media["clip"])
        text = client.chat.completions.create(model=MODEL, messages=messages(url)).choices[0].message.content
        chunks = list(client.chat.completions.create(model=MODEL, messages=messages(url), stream=True))
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert "".join(contents) == text and len(contents) > 1
