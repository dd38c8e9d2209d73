"""``quota demo`` in a real headless Chromium: the page is served by ``python -m quota.cli demo`` on tiny
local models, and driven like a user would (Selenium + the system's chromium and chromedriver, which
``.ci/run`` installs).

Two servers start side by side for the module: one with a tiny Qwen2-VL scorer, one with ``--scorer
uniform``. Screenshots of every state go to ``$QUOTA_ARTIFACTS/demo`` (default: a temporary folder); the
folder is printed at the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from quota.cli import main
from quota.testing.tiny_models import CACHE_ENV
from quota.testing.videos import make_video
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
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log_file.close()


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    videos = root / "videos"
    videos.mkdir()
    make_video(videos / "clip.mp4", n_frames=30, fps=10, size=(96, 72))
    (root / "broken.mp4").write_bytes(bytes(range(256)) * 8)
    return root


@pytest.fixture(scope="module")
def servers(demo_files, tiny_llava_ov, tiny_qwen2_vl) -> Iterator[dict[str, Server]]:
    """Both servers, started together (each takes a while to import Gradio and load its models)."""
    common = ["--base", str(tiny_llava_ov), *FAST, "--videos", str(demo_files / "videos")]
    started = {
        "scorer": Server([*common, "--scorer", str(tiny_qwen2_vl)], demo_files),
        "uniform": Server([*common, "--scorer", "uniform"], demo_files),
    }
    try:
        for server in started.values():
            server.wait()
        yield started
    finally:
        for server in started.values():
            server.stop()


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
                "--window-size=1400,1700", "--lang=en-US"):
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

    def upload(self, path: Path) -> None:
        clear = [b for b in self.all("#quota-video button") if b.get_attribute("aria-label") == "Clear"]
        if clear:
            clear[0].click()
        _wait(lambda: self.all("#quota-video input[type=file]"), 10, "the video upload box")
        self.one("#quota-video input[type=file]").send_keys(str(path))
        _wait(lambda: any(path.name in (v.get_attribute("src") or "") for v in self.all("#quota-video video")),
              20, f"the upload of {path.name}")

    def fill(self, css: str, text: str) -> None:
        box = self.one(css)
        box.clear()
        if text:
            box.send_keys(text)

    def ask(self, *, shot_while_running: str | None = None) -> tuple[str, str]:
        """Press Ask and wait for this request's outcome: ``(kind, text)``, kind ``done`` or ``error``."""
        self.request += 1
        self.one("#quota-ask").click()
        if shot_while_running:
            _wait(lambda: int(self.one("#quota-status p").get_attribute("data-request")) == self.request,
                  RUN_TIMEOUT, "the run to start")
            self.shot(shot_while_running)

        def finished():
            p = self.one("#quota-status p")
            if int(p.get_attribute("data-request")) != self.request:
                return None
            kind = p.get_attribute("class").replace("quota-", "")
            return (kind, p.text) if kind in ("done", "error") else None

        return _wait(finished, RUN_TIMEOUT, f"request {self.request} to finish")  # type: ignore[return-value]

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


# ---------------------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------------------


def test_page_answers_shows_the_plan_and_survives_a_corrupt_file(servers, browser, shots, demo_files, capsys,
                                                                tiny_llava_ov, tiny_qwen2_vl):
    clip, broken = demo_files / "videos" / "clip.mp4", demo_files / "broken.mp4"
    expected = _expected_answer(tiny_llava_ov, tiny_qwen2_vl, clip, QUESTION, OPTIONS)
    page = Page(browser, servers["scorer"].wait(), shots, "scorer")
    page.shot("1-empty")

    page.upload(clip)
    page.fill("#quota-question textarea", QUESTION)
    page.fill("#quota-options textarea", "\n".join(OPTIONS))
    kind, text = page.ask(shot_while_running="2-running")
    assert (kind, text.startswith("done in")) == ("done", True), text
    page.shot("3-answer")

    # the answer is the library's answer for the same video, question and settings
    shown = page.one("#quota-answer .quota-answer-text")
    assert _norm(page.one("#quota-answer .quota-answer-body").text) == (_norm(expected.text) or "(empty answer)")
    assert shown.get_attribute("data-choice") == (expected.choice or "")
    assert [c.text for c in page.all("#quota-answer .quota-choice")] == ([expected.choice] if expected.choice else [])
    # the plan the page offers is the library's plan; the strip shows every kept frame of it
    plan = Plan.from_json(page.download("#quota-plan-file").decode("utf-8"))
    assert plan.grids == expected.plan.grids and plan.question == QUESTION
    assert page.strip_positions() == plan.keep and len(plan.keep) >= 1
    objects = page.one("#quota-objects").text
    if plan.clue.objects:
        assert all(o in objects for o in plan.clue.objects)
    else:
        assert "No specific objects" in objects
    report = page.download("#quota-report-file").decode("utf-8")
    assert report.startswith("<!DOCTYPE html>") and "A: " in report and "QuoTA token plan" in report
    assert page.one("#quota-charts img").get_attribute("src").startswith("data:image/png;base64,")

    # a corrupt file: the command line's message, one line, and no stale answer
    page.upload(broken)
    kind, text = page.ask()
    page.shot("4-corrupt-file")
    assert kind == "error" and "\n" not in text
    served_path = re.search(r"(/\S*broken\.mp4)", text).group(1)
    cli_line = _cli_error(["plan", str(broken), QUESTION, "--scorer", "uniform"], capsys)
    assert text == cli_line.replace(str(broken), served_path)
    assert page.strip_positions() == [] and "not asked for" in page.one("#quota-answer").text

    # the page still answers: a file from the --videos folder this time
    page.one("#quota-video button[aria-label=Clear]").click()
    page.one("#quota-pick input").click()
    _wait(lambda: page.all('#quota-pick li[role=option][aria-label="clip.mp4"]'), 10, "clip.mp4 in the list")[0].click()
    page.fill("#quota-question textarea", "Where is the green square?")
    page.fill("#quota-options textarea", "")
    kind, text = page.ask()
    page.shot("5-next-request")
    assert kind == "done", text
    assert page.all("#quota-answer .quota-answer-text")
    second = Plan.from_json(page.download("#quota-plan-file").decode("utf-8"))
    assert second.question == "Where is the green square?" and page.strip_positions() == second.keep


def test_uniform_scorer_baseline_side_by_side_and_input_errors(servers, browser, shots, demo_files, capsys):
    clip = demo_files / "videos" / "clip.mp4"
    page = Page(browser, servers["uniform"].wait(), shots, "uniform")

    page.fill("#quota-question textarea", QUESTION)
    kind, text = page.ask()
    assert (kind, text) == ("error", "quota: error: no video: upload a file or pick one from the list")
    page.upload(clip)
    page.fill("#quota-question textarea", " ")
    kind, text = page.ask()
    assert kind == "error" and text == _cli_error(["plan", str(clip), " ", "--scorer", "uniform"], capsys)
    page.fill("#quota-question textarea", QUESTION)
    page.fill("#quota-budget input", "0")
    kind, text = page.ask()
    page.shot("1-budget-error")
    assert kind == "error"
    assert text == _cli_error(["plan", str(clip), QUESTION, "--scorer", "uniform", "--budget", "0"], capsys)

    page.fill("#quota-budget input", "40")
    page.fill("#quota-question textarea", CJK_QUESTION)  # any script, typed in the browser
    page.one("#quota-baseline input").click()
    kind, text = page.ask()
    page.shot("2-baseline")
    assert kind == "done", text
    plan = Plan.from_json(page.download("#quota-plan-file").decode("utf-8"))
    assert plan.budget == 40 and plan.tokens <= 40 and plan.question == CJK_QUESTION
    assert CJK_QUESTION in page.download("#quota-report-file").decode("utf-8")
    assert len(set(plan.grids)) == 1  # uniform: every frame the same grid
    assert page.strip_positions() == plan.keep
    assert "No query decoupling" in page.one("#quota-objects").text
    # the baseline answered too, beside QuoTA's answer
    assert page.all("#quota-baseline-answer .quota-answer-text")
    assert "baseline" in page.one("#quota-timings").text
