"""``quota demo`` in a real headless Chromium: the page is served by ``python -m quota.cli demo`` on tiny
local models, and driven like a user would (Selenium + the system's chromium and chromedriver, which
``.ci/run`` installs).

Two servers start side by side for the module: one with a tiny Qwen2-VL scorer, one with ``--scorer
uniform`` (longer answers, a 1 MiB upload limit). Each test drives one page at the two sizes a visitor brings,
1280x900 and a 390x844 phone, in one browser. Screenshots of every state go to ``$QUOTA_ARTIFACTS/demo``
(default: a temporary folder); the folder is printed at the end of the run. The servers run with ``TMPDIR`` in
the test's folder, so what they leave behind can be checked.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from quota.cli import main
from quota.demo.app import EXAMPLE_QUESTION
from quota.testing.tiny_models import CACHE_ENV
from quota.testing.videos import make_video, truncate_file
from quota.types import Plan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs the chromium and chromium-driver system packages (.ci/run installs them)"),
    pytest.mark.timeout(240),  # a run that never finishes fails after RUN_TIMEOUT; this guards the start-up
]

FAST = ["--frames", "6", "--budget", "30", "--set", "max_new_tokens=4", "--set", "decouple_max_new_tokens=16",
        "--set", "scorer_batch_size=6", "--device", "cpu"]
#: Longest wait for one run of the page (the tiny models answer in about a second).
RUN_TIMEOUT = 30.0
#: The two window sizes every page is looked at in: a laptop and a phone.
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
QUESTION = "What colour is the ball?"
OPTIONS = ["A. red", "B. blue", "C. green"]
CJK_QUESTION = "球是什么颜色的？"


# ---------------------------------------------------------------------------------------------------------
# Servers, browser, screenshots
# ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``quota demo`` in a child process; :attr:`url` once it printed that it is serving."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.tmp = cwd / f"tmp-{len(list(cwd.glob('tmp-*')))}"
        self.tmp.mkdir()
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(self.tmp))
        env.pop("GRADIO_TEMP_DIR", None)
        self.port = _free_port()
        self.log = cwd / f"server-{self.port}.log"
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quota.cli", "demo", *args, "--port", str(self.port), "--quiet"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self._log_file, text=True,
        )
        self.url: str | None = None

    def wait(self, timeout: float = 150.0) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while self.url is None:
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail(f"quota demo exited with {self.proc.wait()}: {self.log.read_text()[-3000:]}")
            match = re.search(r"serving on (http://\S+)", line)
            if match:
                self.url = match.group(1)
            if time.monotonic() > deadline:
                pytest.fail(f"quota demo did not start in {timeout:.0f} s")
        assert self.url == f"http://127.0.0.1:{self.port}/"  # bound to this machine by default
        return self.url

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the server as a user or a service manager would; its exit status (``None``: it had to be
        killed after 20 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self._log_file.close()
        return code

    def workdir(self) -> Path:
        """The server's own temporary folder (``quota-demo-*`` under its ``TMPDIR``)."""
        found = sorted(self.tmp.glob("quota-demo-*"))
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    videos = root / "videos"
    videos.mkdir()
    make_video(videos / "clip.mp4", n_frames=30, fps=10, size=(96, 72))
    (videos / "secret.txt").write_text("not for the web")
    (videos / ".hidden.mp4").write_bytes((videos / "clip.mp4").read_bytes())
    (root / "broken.mp4").write_bytes(bytes(range(256)) * 8)
    # a live playlist (FFmpeg would wait for its segments for ever) and a concat list named .mp4 that
    # includes itself (FFmpeg would loop on it)
    # (under a video's name, as the page's video box takes it; tests/test_video_guard.py covers the .m3u8 name)
    (root / "live.mp4").write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n")
    (root / "loop.mp4").write_text("ffconcat version 1.0\nfile loop.mp4\nfile loop.mp4\n")
    # a file cut short: the header promises 8 s, the frames end before
    full = make_video(root / "full.mkv", n_frames=80, fps=10, size=(96, 72), gop=10)
    truncate_file(full, root / "damaged.mkv", 0.5)
    (root / "big.mp4").write_bytes(os.urandom(3 * 1024 * 1024 // 2))  # 1.5 MiB: over the 1 MiB limit
    return root


@pytest.fixture(scope="module")
def servers(demo_files, tiny_llava_ov, tiny_qwen2_vl) -> Iterator[dict[str, Server]]:
    """Both servers, started together (each takes a while to import Gradio and load its models)."""
    common = ["--base", str(tiny_llava_ov), *FAST, "--videos", str(demo_files / "videos")]
    started = {
        "scorer": Server([*common, "--scorer", str(tiny_qwen2_vl)], demo_files),
        "uniform": Server([*common, "--scorer", "uniform", "--set", "max_new_tokens=48", "--max-upload-mb", "1"],
                          demo_files),
    }
    try:
        for server in started.values():
            server.wait()
        yield started
    finally:
        for server in started.values():
            if server.proc.poll() is None:
                assert server.stop() == 0  # SIGTERM: a clean stop
            assert not list(server.tmp.glob("quota-demo-*")), "the server left its temporary folder"


@pytest.fixture(scope="module")
def shots(tmp_path_factory, request) -> Iterator[Path]:
    """Folder of this run's screenshots (``$QUOTA_ARTIFACTS/demo`` when set), printed at the end."""
    root = os.environ.get("QUOTA_ARTIFACTS")
    folder = Path(root) / "demo" if root else tmp_path_factory.mktemp("demo-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nquota demo screenshots: {folder}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US",
                "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


# ---------------------------------------------------------------------------------------------------------
# Driving the page
# ---------------------------------------------------------------------------------------------------------


def _wait(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # an element replaced while reading it: look again
            value = None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Page:
    def __init__(self, driver, url: str, shots: Path, name: str) -> None:
        from selenium.webdriver.common.by import By

        self.d, self.by, self.shots, self.name = driver, By, shots, name
        driver.get(url)
        _wait(lambda: self.all("#quota-ask") and self.all("#quota-status p"), 30, "the page")
        self.request = 0

    def all(self, css: str) -> list:
        return self.d.find_elements(self.by.CSS_SELECTOR, css)

    def one(self, css: str):
        return self.d.find_element(self.by.CSS_SELECTOR, css)

    def shot(self, label: str) -> Path:
        path = self.shots / f"{self.name}-{label}.png"
        self.d.save_screenshot(str(path))
        return path

    def size(self, name: str) -> None:
        """Make the page's viewport the size ``name`` of :data:`SIZES` (the window is resized to fit)."""
        width, height = SIZES[name]
        self.d.set_window_size(width, height)
        inner = self.d.execute_script("return [window.innerWidth, window.innerHeight]")
        self.d.set_window_size(2 * width - inner[0], 2 * height - inner[1])
        _wait(lambda: self.d.execute_script("return [window.innerWidth, window.innerHeight]") == [width, height],
              5, f"a {width}x{height} viewport")
        self.name = f"{self.name.split('@')[0]}@{name}"

    def in_view(self, css: str) -> bool:
        """Whether the element is inside the viewport, whole (as the visitor sees it, without scrolling)."""
        return bool(self.d.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&"
            " r.bottom <= window.innerHeight && r.right <= window.innerWidth;", self.one(css)))

    def rect(self, css: str) -> dict:
        return self.d.execute_script("const r = arguments[0].getBoundingClientRect();"
                                     "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};",
                                     self.one(css))

    def page_width(self) -> int:
        """Width of everything on the page (more than the viewport: the visitor must scroll sideways)."""
        return int(self.d.execute_script("return document.documentElement.scrollWidth"))

    def scroll_to_ask(self) -> None:
        """Scroll as a visitor does before pressing Ask: until the button is in view, at the bottom."""
        self.d.execute_script("arguments[0].scrollIntoView({block: 'end'})", self.one("#quota-ask"))

    def upload(self, path: Path) -> None:
        clear = [b for b in self.all("#quota-video button") if b.get_attribute("aria-label") == "Clear"]
        if clear:
            clear[0].click()
        _wait(lambda: self.all("#quota-video input[type=file]"), 10, "the video upload box")
        self.one("#quota-video input[type=file]").send_keys(str(path))
        _wait(lambda: any(path.name in (v.get_attribute("src") or "") for v in self.all("#quota-video video")),
              20, f"the upload of {path.name}")

    def fill(self, css: str, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.one(css)
        box.send_keys(Keys.CONTROL, "a")  # select and delete, as typing does: the page hears an input event
        box.send_keys(Keys.DELETE)
        if text:
            box.send_keys(text)

    def ask(self, *, shot_while_running: str | None = None, check_view: bool = True) -> tuple[str, str]:
        """Press Ask (scrolled to it, as a visitor) and wait for this request's outcome: ``(kind, text)``, kind
        ``done`` or ``error``. With ``check_view``, the status must be in view while the run goes and after."""
        # the server numbers its runs (a stopped one too): this one is the first above any number seen
        seen = int(self.one("#quota-status p").get_attribute("data-request"))
        self.request = max(self.request, seen)
        self.scroll_to_ask()
        self.one("#quota-ask").click()

        def started():
            number = int(self.one("#quota-status p").get_attribute("data-request"))
            return number if number > self.request else None

        self.request = _wait(started, RUN_TIMEOUT, "the run to start")  # type: ignore[assignment]
        if shot_while_running or check_view:
            if check_view and "quota-stage" in self.one("#quota-status p").get_attribute("class"):
                assert self.in_view("#quota-status p"), f"{self.name}: the progress is out of view"
            if shot_while_running:
                self.shot(shot_while_running)

        def finished():
            p = self.one("#quota-status p")
            if int(p.get_attribute("data-request")) != self.request:
                return None
            kind = p.get_attribute("class").replace("quota-", "")
            return (kind, p.text) if kind in ("done", "error") else None

        outcome = _wait(finished, RUN_TIMEOUT, f"request {self.request} to finish")
        if check_view:
            assert self.in_view("#quota-status p"), f"{self.name}: the outcome {outcome} is out of view"
        return outcome  # type: ignore[return-value]

    def href(self, css: str) -> str:
        return _wait(lambda: [a for a in self.all(f"{css} a") if a.get_attribute("href")], 10,
                     f"a link in {css}")[0].get_attribute("href")  # type: ignore[index]

    def download(self, css: str) -> bytes:
        link = _wait(lambda: [a for a in self.all(f"{css} a") if a.get_attribute("href")], 10, f"a link in {css}")
        with urllib.request.urlopen(link[0].get_attribute("href"), timeout=10) as response:  # type: ignore[index]
            return response.read()

    def strip_positions(self) -> list[int]:
        return [int(f.get_attribute("data-position")) for f in self.all("#quota-strip figure.frame")]


def _cli_error(argv: list[str], capsys) -> str:
    """The one line ``quota ARGV`` prints for its error."""
    capsys.readouterr()
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("quota: error:")]
    assert len(lines) == 1
    return lines[0]


def _expected_answer(tiny_llava_ov: Path, tiny_qwen2_vl: Path | str, video: Path, question: str, options):
    """The library's own answer for the page's settings, on one thread as the server runs."""
    import torch

    from quota.pipeline import QuoTA

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        qa = QuoTA.from_pretrained(base=str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True,
                                   base_frames=6, budget=30, max_new_tokens=4, decouple_max_new_tokens=16,
                                   scorer_batch_size=6)
        return qa.answer(str(video), question, options=options)
    finally:
        torch.set_num_threads(threads)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _status_code(url: str, data: bytes | None = None, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _served_path(href: str) -> Path:
    """The file on the server behind a download link (``.../gradio_api/file=/path``)."""
    return Path(urllib.parse.unquote(href.split("file=", 1)[1]))


def _no_server_paths(text: str, *roots: Path) -> None:
    """Nothing on the page names a folder of the server: no temporary path, no 32+ hex digit hash."""
    for root in roots:
        assert str(root) not in text
    assert "/tmp/" not in text and re.search(r"[0-9a-f]{32}", text) is None, text


# ---------------------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------------------


def test_page_answers_in_view_refuses_bad_files_and_serves_only_its_own_files(
        servers, browser, shots, demo_files, capsys, tiny_llava_ov, tiny_qwen2_vl):
    server = servers["scorer"]
    clip, broken = demo_files / "videos" / "clip.mp4", demo_files / "broken.mp4"
    expected = _expected_answer(tiny_llava_ov, tiny_qwen2_vl, clip, QUESTION, OPTIONS)
    broken_line = _cli_error(["plan", str(broken), QUESTION, "--scorer", "uniform"], capsys)
    for size in SIZES:
        page = Page(browser, server.wait(), shots, "scorer")
        page.size(size)
        page.shot("1-empty")
        # the list offers the videos of the folder, no other file, no dotfile, and not the folder's path
        assert str(demo_files) not in page.one("#quota-pick").text
        page.one("#quota-pick input").click()
        listed = [o.get_attribute("aria-label") for o in
                  _wait(lambda: page.all("#quota-pick li[role=option]"), 10, "the list")]  # type: ignore[union-attr]
        assert "clip.mp4" in listed and "secret.txt" not in listed and ".hidden.mp4" not in listed
        page.one("#quota-question textarea").click()  # closes the list

        page.upload(clip)
        page.fill("#quota-question textarea", QUESTION)
        page.fill("#quota-options textarea", "\n".join(OPTIONS))
        kind, text = page.ask(shot_while_running="2-running")  # the progress in view while it runs
        assert (kind, text.startswith("done in")) == ("done", True), text
        page.shot("3-answer")

        # the answer is the library's answer for the same video, question and settings
        shown = page.one("#quota-answer .quota-answer-text")
        assert _norm(page.one("#quota-answer .quota-answer-body").text) == (_norm(expected.text) or "(empty answer)")
        assert shown.get_attribute("data-choice") == (expected.choice or "")
        assert [c.text for c in page.all("#quota-answer .quota-choice")] == ([expected.choice] if expected.choice
                                                                                else [])
        # the plan the page offers is the library's plan; the strip shows every kept frame of it
        plan = Plan.from_json(page.download("#quota-plan-file").decode("utf-8"))
        assert plan.grids == expected.plan.grids and plan.question == QUESTION
        assert plan.video == "clip.mp4"  # the name the user knows, not the server's path
        assert page.strip_positions() == plan.keep and len(plan.keep) >= 1
        objects = page.one("#quota-objects").text
        if plan.clue.objects:
            assert all(o in objects for o in plan.clue.objects)
        else:
            assert "No specific objects" in objects
        report = page.download("#quota-report-file").decode("utf-8")
        assert report.startswith("<!DOCTYPE html>") and "A: " in report and "QuoTA token plan" in report
        assert "video: <code>clip.mp4</code>" in report
        _no_server_paths(report.split("<img", 1)[0], demo_files)
        assert page.one("#quota-charts img").get_attribute("src").startswith("data:image/png;base64,")

        if size == "desktop":
            # the web server hands out the files the page made for this visitor, nothing else on the disk
            report_href = page.href("#quota-report-file")
            base = server.url + "gradio_api/file="
            assert _status_code(report_href) == 200
            planted = [demo_files / "videos" / "secret.txt", clip, demo_files / "videos" / ".hidden.mp4",
                       Path(sys.prefix) / "pyvenv.cfg", Path(sys.executable),
                       next(server.workdir().glob("runs/run-*/report.html")), demo_files / server.log.name]
            for path in planted:
                assert _status_code(base + str(path)) in (403, 404), path
            assert _status_code(base + str(demo_files / "videos" / ".." / "videos" / "secret.txt")) in (403, 404)

        # a corrupt file: the command line's message, one line, with the file's own name, and no stale answer
        page.upload(broken)
        kind, text = page.ask()
        page.shot("4-corrupt-file")
        assert kind == "error" and "\n" not in text
        assert text == broken_line.replace(str(broken), "broken.mp4")
        _no_server_paths(page.one("body").text, demo_files)
        assert page.strip_positions() == [] and "not asked for" in page.one("#quota-answer").text

        # a live playlist and a concat list that includes itself are refused at once; the page keeps serving
        for name in ("live.mp4", "loop.mp4"):
            page.upload(demo_files / name)
            kind, text = page.ask()
            assert kind == "error" and f"quota: error: {name} is" in text and "not a video file" in text, text
        page.shot("5-playlist-refused")

        # a file from the --videos folder
        page.one("#quota-video button[aria-label=Clear]").click()
        page.one("#quota-pick input").click()
        _wait(lambda: page.all('#quota-pick li[role=option][aria-label="clip.mp4"]'), 10,
              "clip.mp4 in the list")[0].click()  # type: ignore[index]
        page.fill("#quota-question textarea", "Where is the green square?")
        page.fill("#quota-options textarea", "")
        kind, text = page.ask()
        page.shot("6-next-request")
        assert kind == "done", text
        assert page.all("#quota-answer .quota-answer-text")
        second = Plan.from_json(page.download("#quota-plan-file").decode("utf-8"))
        assert second.question == "Where is the green square?" and page.strip_positions() == second.keep

        if size == "desktop":
            # the page says what runs it, and one click tries the example made at start-up
            about = _norm(page.one("#quota-about").text)
            assert "device cpu" in about and "dtype float32" in about and tiny_qwen2_vl.name in about
            _no_server_paths(about, demo_files)
            page.one("#quota-example").click()
            _wait(lambda: page.one("#quota-question textarea").get_attribute("value") == EXAMPLE_QUESTION, 10,
                  "the example's question")
            kind, text = page.ask()
            assert kind == "done", text
            assert Plan.from_json(page.download("#quota-plan-file").decode("utf-8")).question == EXAMPLE_QUESTION
            page.shot("7-example")


def _boxes_apart(a: dict, b: dict) -> bool:
    return a["right"] <= b["left"] + 1 or b["right"] <= a["left"] + 1 or a["bottom"] <= b["top"] + 1 \
        or b["bottom"] <= a["top"] + 1


def test_layout_baseline_warnings_stop_upload_limit_and_cleanup(servers, browser, shots, demo_files, capsys,
                                                               tiny_llava_ov):
    server = servers["uniform"]
    clip, damaged = demo_files / "videos" / "clip.mp4", demo_files / "damaged.mkv"
    cli = ["--base", str(tiny_llava_ov), "--scorer", "uniform", "--frames", "6", "--set", "max_new_tokens=48"]
    for size, (width, _) in SIZES.items():
        page = Page(browser, server.wait(), shots, "uniform")
        page.size(size)
        if size == "desktop":  # input errors: the command line's lines, in view
            page.fill("#quota-question textarea", QUESTION)
            kind, text = page.ask()
            assert (kind, text) == ("error", "quota: error: no video: upload a file or pick one from the list")
            page.upload(clip)
            page.fill("#quota-question textarea", " ")
            kind, text = page.ask()
            assert kind == "error" and text == _cli_error(["plan", str(clip), " ", *cli], capsys).replace(
                str(clip), "clip.mp4")
            page.fill("#quota-question textarea", QUESTION)
            for budget in ("0", "3", "999999"):  # below 1, below the 6 frames, above the model's context
                page.fill("#quota-budget input", budget)
                kind, text = page.ask()
                assert kind == "error"
                assert text == _cli_error(["plan", str(clip), QUESTION, *cli, "--budget", budget], capsys).replace(
                    str(clip), "clip.mp4")
            page.shot("1-budget-error")
            page.fill("#quota-options textarea", "C. red\nA. blue")  # lettered out of order: refused, not re-lettered
            kind, text = page.ask()
            assert kind == "error" and "labelled C" in text
            page.fill("#quota-options textarea", "")

            # Stop during a run: it ends at its next stage (or had finished: the tiny models are quick), the
            # status says which, and the models are free for the next run at once (tests/test_demo.py checks
            # the stop itself, stage by stage)
            page.fill("#quota-budget input", "40")
            seen = int(page.one("#quota-status p").get_attribute("data-request"))
            page.scroll_to_ask()
            page.one("#quota-ask").click()
            _wait(lambda: int(page.one("#quota-status p").get_attribute("data-request")) > seen, RUN_TIMEOUT,
                  "the run to start")
            page.one("#quota-stop").click()
            _wait(lambda: page.one("#quota-status p").get_attribute("class") in ("quota-stopped", "quota-done"),
                  RUN_TIMEOUT, "the run to stop")
            page.shot("1-stopped")
            kind, text = page.ask()
            assert kind == "done", text

        page.upload(damaged)
        page.fill("#quota-budget input", "40")
        page.fill("#quota-question textarea", CJK_QUESTION)  # any script, typed in the browser
        if not page.one("#quota-baseline input").is_selected():
            page.one("#quota-baseline input").click()
        kind, text = page.ask()
        assert kind == "done", text
        page.shot("2-baseline")
        plan = Plan.from_json(page.download("#quota-plan-file").decode("utf-8"))
        assert plan.budget == 40 and plan.tokens <= 40 and plan.question == CJK_QUESTION
        assert len(set(plan.grids)) == 1  # uniform: every frame the same grid
        assert page.strip_positions() == plan.keep
        objects = page.one("#quota-objects").text
        assert "Uniform scorer" in objects and "against the question" not in objects
        # the video's warnings beside the answer and in the report, with the file's own name
        notes = page.one("#quota-warnings").text
        assert "damaged.mkv: the file says the video lasts 8.00s" in notes, notes
        report = page.download("#quota-report-file").decode("utf-8")
        assert CJK_QUESTION in report and "the file says the video lasts 8.00s" in report
        assert "uniform scorer: no frame scored" in report and "against the question" not in report
        _no_server_paths(page.one("body").text, demo_files)
        # the baseline answered too, beside QuoTA's answer, with what it was shown
        shown = page.one("#quota-baseline-answer .quota-shown").text
        assert re.fullmatch(r"\d+ frames, [\d,]+ visual tokens \(\d+×\d+ each, the model's own sampling\)", shown)
        assert "baseline" in page.one("#quota-timings").text

        # layout: nothing wider than the screen, the answers wrap and do not overlap
        assert page.page_width() <= width, f"{size}: the page is {page.page_width()} px wide"
        assert _boxes_apart(page.rect("#quota-answer"), page.rect("#quota-baseline-answer"))
        for css in ("#quota-answer .quota-answer-body", "#quota-baseline-answer .quota-answer-body"):
            assert page.d.execute_script("const e = arguments[0]; return e.scrollWidth <= e.clientWidth + 1",
                                         page.one(css)), css
        chart = page.rect("#quota-charts img")
        assert chart["bottom"] - chart["top"] >= 300  # readable on a phone too
        served = [_served_path(page.href("#quota-plan-file")), _served_path(page.href("#quota-report-file"))]
        assert all(p.exists() for p in served)
        # the report fits the screen as well (a copy: leaving the page removes what it made)
        copy = demo_files / f"report-{size}.html"
        copy.write_bytes(page.download("#quota-report-file"))
        page.d.get(copy.as_uri())
        assert page.page_width() <= width, f"{size}: the report is {page.page_width()} px wide"
        page.shot("3-report")
        # the page was left: what it made is removed (its upload and the copies it offered)
        _wait(lambda: not any(p.exists() for p in served), 30, "the page's files to be removed")

    # uploads over --max-upload-mb are refused
    big = (demo_files / "big.mp4").read_bytes()
    body = (b"--xx\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n" + big + b"\r\n--xx--\r\n")
    code = _status_code(server.url + "gradio_api/upload", body, {"Content-Type": "multipart/form-data; boundary=xx"})
    assert code == 413, code
    # stopping the server removes the rest
    workdir = server.workdir()
    assert server.stop(signal.SIGINT) == 0  # Ctrl+C stops it
    assert not workdir.exists() and not list(server.tmp.iterdir())
