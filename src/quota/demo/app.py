"""The demo page, built with Gradio (the optional extra ``quota[demo]``).

:func:`build_app` lays out the page around a :class:`~quota.demo.session.DemoSession`; :func:`launch`
serves it. Every element a test or a user script needs has an ``elem_id`` (:data:`IDS`). Runs go through
Gradio's queue with a concurrency of one: a second click waits for the run in progress, since both would
use the same models.

Bad input does not stop the page: the status box shows the command line's one-line message
(``quota: error: ...``) and the next request is served as usual.
"""

from __future__ import annotations

import html
import itertools
import os
import queue
import re
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import QuotaError
from ..report import timings_text, frame_strip_html, render_charts
from .example import OPTIONS as EXAMPLE_OPTIONS
from .example import QUESTION as EXAMPLE_QUESTION
from .example import make_example
from .session import AnswerSoFar, DemoResult, DemoSession, RunStopped, Stage

#: elem_id of each element of the page.
IDS = {
    "video": "quota-video", "pick": "quota-pick", "question": "quota-question", "options": "quota-options",
    "budget": "quota-budget", "baseline": "quota-baseline", "ask": "quota-ask", "status": "quota-status",
    "answer": "quota-answer", "baseline_answer": "quota-baseline-answer", "objects": "quota-objects",
    "charts": "quota-charts", "strip": "quota-strip", "timings": "quota-timings", "settings": "quota-settings",
    "plan_file": "quota-plan-file", "report_file": "quota-report-file", "warnings": "quota-warnings",
    "stop": "quota-stop", "about": "quota-about", "example": "quota-example",
}
#: Title of the baseline's answer box.
BASELINE_TITLE = "baseline (uniform frames)"
#: Longest side of a picture in the frame strip, in pixels.
STRIP_SIDE = 128

CSS = """
#quota-answer,#quota-baseline-answer,#quota-status,#quota-warnings,#quota-objects,#quota-timings{min-width:0;
overflow-wrap:anywhere}
#quota-answer,#quota-baseline-answer{flex:1 1 260px}
#quota-results-row{flex-wrap:wrap}
#quota-status p{margin:4px 0;font-size:1.05em}
#quota-status{scroll-margin-top:104px;flex:1 1 0}
#quota-status-row{flex-wrap:nowrap;align-items:flex-start}
#quota-stop{flex:0 0 auto;align-self:flex-start}
.quota-stage::before{content:"";display:inline-block;width:.8em;height:.8em;margin-right:8px;border-radius:50%;
border:2px solid #1b6ca8;border-top-color:transparent;animation:quota-spin 1s linear infinite;vertical-align:-1px}
@keyframes quota-spin{to{transform:rotate(360deg)}}
#quota-warnings ul{color:#8a4b00;background:#fff6e5;border:1px solid #f0d19a;border-radius:4px;margin:4px 0;
padding:6px 6px 6px 26px}
#quota-about{color:#555;font-size:.9em}
#quota-strip .strip{display:flex;flex-wrap:nowrap;overflow-x:auto;gap:8px;padding-bottom:6px}
#quota-strip figure{margin:0;text-align:center;font-size:.78em;flex:0 0 auto;max-width:150px}
#quota-strip img{display:block;border:2px solid #e7298a;border-radius:3px;margin:0 auto}
#quota-objects span{display:inline-block;background:#eef3fa;border:1px solid #c9d7ea;border-radius:10px;
padding:1px 9px;margin:2px 4px 2px 0;color:#1b3b63}
#quota-charts img{width:100%;height:auto;max-width:100%}
@media (max-width:700px){#quota-charts{overflow-x:auto}#quota-charts img{width:auto;max-width:none;height:360px}}
.quota-error{color:#b00020;font-weight:600}
.quota-done{color:#1b6b2a}
.quota-stopped{color:#8a4b00}
.quota-answer-text{font-size:1.15em;white-space:pre-wrap}
.quota-choice{display:inline-block;font-weight:700;background:#1b6ca8;color:#fff;border-radius:4px;
padding:0 8px;margin-right:6px}
#quota-timings table{font-variant-numeric:tabular-nums}
"""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _e(value: Any) -> str:
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def error_line(exc: BaseException, paths: dict[str, str] | None = None) -> str:
    """The line the command line prints for ``exc`` (``quota: error: ...``); running out of memory says what to
    lower, and anything else (a bug) is named by its type on one line too. ``paths`` maps server paths to the
    names the user knows (an upload's file name): no server path reaches the page."""
    from .. import commands

    if not isinstance(exc, QuotaError):
        exc = commands.memory_error(exc) or exc
    if isinstance(exc, QuotaError):
        line = commands.error_line(exc)
    else:
        line = f"{commands.PROG}: error: internal error ({type(exc).__name__}): {commands.one_line(str(exc))}"
    return public_text(line, paths)


def public_text(text: str, paths: dict[str, str] | None) -> str:
    """``text`` with each server path of ``paths`` (longest first) replaced by its public name."""
    for path, name in sorted((paths or {}).items(), key=lambda item: -len(item[0])):
        if path:
            text = text.replace(path, name)
    return text


def status_html(text: str, kind: str = "stage", request: int = 0) -> str:
    """The status box: ``kind`` is ``ready``, ``stage`` (a run is in that stage), ``done``, ``stopped`` or ``error``;
    ``request`` numbers the page's requests (``data-request``), so a reader can tell two runs apart."""
    return f'<p class="quota-{kind}" data-request="{int(request)}">{_e(text)}</p>'


def partial_answer_html(title: str, text: str) -> str:
    """An answer box while the answer is being written: the title and the text so far."""
    return (f'<h3>{_e(title)}</h3><div class="quota-answer-text quota-streaming">'
            f'<span class="quota-answer-body">{_e(text)}</span></div>')


def answer_html(title: str, answer: Any, grid: Any = None) -> str:
    """One answer box: a title, the chosen letter (if any), the text, and what the model was shown: QuoTA's
    kept frames and tokens, or for the baseline its frames at the native ``grid`` ``(h, w)``."""
    if answer is None:
        return f"<h3>{_e(title)}</h3><p><em>not asked for</em></p>"
    choice = f'<span class="quota-choice">{_e(answer.choice)}</span>' if answer.choice else ""
    text = answer.text.strip() or "(empty answer)"
    tokens = ""
    if answer.plan is not None:
        tokens = f'<p class="quota-shown">{len(answer.plan.keep)} frames, {answer.plan.tokens:,} visual tokens</p>'
    elif answer.frames is not None and grid is not None:
        n, (h, w) = len(answer.frames), grid
        tokens = (f'<p class="quota-shown">{n} frames, {n * h * w:,} visual tokens ({h}×{w} each, the '
                  "model's own sampling)</p>")
    return (f'<h3>{_e(title)}</h3><div class="quota-answer-text" data-choice="{_e(answer.choice or "")}">'
            f'{choice}<span class="quota-answer-body">{_e(text)}</span></div>{tokens}')


def objects_html(result: DemoResult, scorer: str | None = None) -> str:
    clue = result.plan.clue
    if scorer == "uniform":
        return "<p>Uniform scorer: no frame is scored; every frame gets the same score and the same grid.</p>"
    if clue is None or clue.mode == "none":
        return "<p>No query decoupling: frames are scored against the question itself.</p>"
    if not clue.objects:
        return "<p>No specific objects: frames are scored on whether they suffice to answer.</p>"
    label = "Events" if clue.mode == "event" else "Objects"
    chips = "".join(f'<span class="quota-object">{_e(o)}</span>' for o in clue.objects)
    return f"<p>{label} the model looked for: {chips}</p>"


def charts_html(result: DemoResult) -> str:
    import base64

    data = base64.b64encode(render_charts(result.plan)).decode("ascii")
    return f'<img alt="relevance score and tokens of each sampled frame" src="data:image/png;base64,{data}">'


def strip_html(result: DemoResult) -> str:
    plan = result.plan
    head = (f"<p>{len(plan.keep)} of {len(plan.indices)} sampled frames kept, {plan.tokens:,} of "
            f"{plan.budget:,} tokens; each frame with its time, token grid and score:</p>")
    return head + frame_strip_html(plan, result.frames, None, side=STRIP_SIDE)


def timings_html(result: DemoResult) -> str:
    rows = [("QuoTA", result.answer.timings)]
    if result.baseline is not None:
        rows.append(("baseline", result.baseline.timings))
    return "".join(f"<p><b>{_e(name)}</b>: {_e(timings_text(t))}</p>" for name, t in rows)


def warnings_html(notes: Sequence[str]) -> str:
    """What reading the video said (a file cut short, undecodable frames), shown beside the answer."""
    if not notes:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in notes)
    return f'<ul title="what reading the video said">{items}</ul>'


def video_choices(folder: str | Path | None) -> list[str]:
    """Names of the video files directly in ``folder``, sorted (none when no folder is given): regular files
    (symbolic links followed only when they stay inside the folder) with a video extension, no dotfiles."""
    if folder is None:
        return []
    from ..eval.benchmarks import VIDEO_EXTENSIONS

    root = Path(folder).resolve()
    names = []
    for p in root.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        try:
            real = p.resolve(strict=True)
        except (OSError, RuntimeError):  # a broken link or a link loop
            continue
        if real.parent == root or real.is_relative_to(root):
            if real.is_file():
                names.append(p.name)
    return sorted(names)


#: The result components, in the order :func:`_values` and :func:`_empty_values` fill them.
RESULTS = ("answer", "baseline_answer", "warnings", "objects", "strip", "charts", "timings", "plan_file",
           "report_file", "settings")
#: Name of the example video in the list (made at start-up, see :func:`make_example`).
EXAMPLE_NAME = "example: moving squares (synthetic)"
#: Scroll the status into view when a run starts, if it is out of view (on a phone the results are below the
#: inputs); it stops 104 px below the top (its scroll-margin), clear of Gradio's notices.
SCROLL_TO_STATUS = ("(...args) => { const el = document.getElementById('quota-status'); if (el) { "
                    "const r = el.getBoundingClientRect(); if (r.top < 0 || r.bottom > window.innerHeight) "
                    "el.scrollIntoView({block: 'start', behavior: 'instant'}); } return args; }")


def about_text(session: DemoSession) -> str:
    """The models, device and dtype the page runs on, as one line of Markdown."""
    qa = session.qa
    parts = [f"base `{session.base}`" if session.base else "no base model", f"scorer `{session.scorer}`"]
    model = getattr(getattr(qa, "adapter", None), "model", None)
    if model is not None:
        parts.append(f"device `{model.device}`")
        parts.append(f"dtype `{str(model.dtype).replace('torch.', '')}`")
    parts.append(f"preset `{session.preset}`")
    parts.append(f"budget {qa.config.budget:,} tokens")
    return "Running: " + " · ".join(parts)


def _input_column(gr: Any, session: DemoSession, names: list[str], example: bool) -> dict[str, Any]:
    """The left column: video, question, options, budget, baseline toggle and the button."""
    choices = ([EXAMPLE_NAME] if example else []) + names
    return {
        "video": gr.Video(label="video", sources=["upload"], elem_id=IDS["video"]),
        "pick": gr.Dropdown(choices=choices, value=None, label="or pick a video from the list",
                            elem_id=IDS["pick"], visible=bool(choices)),
        "example": gr.Button("Try the example", size="sm", elem_id=IDS["example"], visible=example),
        "question": gr.Textbox(label="question", lines=2, elem_id=IDS["question"]),
        "options": gr.Textbox(label="options (optional, one per line: A. ..., B. ...)", lines=3,
                              elem_id=IDS["options"]),
        "budget": gr.Number(label="token budget (total visual tokens)", value=session.qa.config.budget, precision=0,
                            elem_id=IDS["budget"]),
        "baseline": gr.Checkbox(label="also answer without QuoTA (the baseline), side by side",
                                elem_id=IDS["baseline"]),
        "ask": gr.Button("Ask", variant="primary", elem_id=IDS["ask"]),
    }


def _result_column(gr: Any) -> dict[str, Any]:
    """The right column: the status (progress and errors) and Stop on top, where the eye goes after Ask; the
    two answers side by side, the video's warnings, what QuoTA did, the downloads, the settings."""
    out: dict[str, Any] = {}
    with gr.Row(elem_id="quota-status-row"):
        out["status"] = gr.HTML(status_html("ready", "ready"), elem_id=IDS["status"])
        out["stop"] = gr.Button("Stop", size="sm", variant="secondary", elem_id=IDS["stop"], scale=0, min_width=64)
    with gr.Row(elem_id="quota-results-row"):
        out["answer"] = gr.HTML(answer_html("QuoTA", None), elem_id=IDS["answer"], min_height=120)
        out["baseline_answer"] = gr.HTML(answer_html(BASELINE_TITLE, None), elem_id=IDS["baseline_answer"])
    for name in ("warnings", "objects", "strip", "charts", "timings"):
        out[name] = gr.HTML(elem_id=IDS[name])
    with gr.Row():
        out["plan_file"] = gr.File(label="plan (JSON)", elem_id=IDS["plan_file"], interactive=False)
        out["report_file"] = gr.File(label="report (HTML)", elem_id=IDS["report_file"], interactive=False)
    with gr.Accordion("settings used", open=False):
        out["settings"] = gr.JSON(label="settings", elem_id=IDS["settings"])
    return out


class Visitors:
    """The files each visitor's page made (uploads, runs, the copies served for download), removed when the
    page is closed. Keyed by Gradio's session hash."""

    def __init__(self, served: Path, keep_runs: bool) -> None:
        self.served = served
        self.keep_runs = keep_runs
        self.files: dict[str, set[Path]] = {}
        self._serial = itertools.count(1)

    def add(self, visitor: str, *paths: Path) -> None:
        self.files.setdefault(visitor, set()).update(Path(p) for p in paths)

    def serve(self, visitor: str, result: DemoResult) -> tuple[str, str]:
        """Copies of the run's plan and report in a folder of their own under the page's private cache (so the
        page offers them without opening the output folder to the web); the visitor's."""
        folder = self.served / f"{next(self._serial):06d}-{os.urandom(8).hex()}"
        folder.mkdir(parents=True)
        plan = Path(shutil.copy2(result.plan_path, folder / "plan.json"))
        report = Path(shutil.copy2(result.report_path, folder / "report.html"))
        self.add(visitor, folder)
        if not self.keep_runs:
            self.add(visitor, result.plan_path.parent)
        return str(plan), str(report)

    def forget(self, visitor: str) -> None:
        """Remove the visitor's files (called when the page is closed)."""
        for path in self.files.pop(visitor, set()):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                if path.parent.parent == Path(os.environ.get("GRADIO_TEMP_DIR", "/nonexistent")):
                    shutil.rmtree(path.parent, ignore_errors=True)  # Gradio's folder for that upload


def _handler(gr: Any, session: DemoSession, videos: str | Path | None, names: list[str], status: Any,
             results: list[Any], visitors: Visitors, example: Path | None) -> Any:
    """The function behind Ask: yields the status at each stage, then every result (or the error line)."""
    requests = itertools.count(1)

    def source(video_path: str | None, picked: str | None) -> tuple[str | None, str | None]:
        """The video's path on the server and the name the user knows it by."""
        if video_path:
            return video_path, Path(video_path).name
        if picked == EXAMPLE_NAME and example is not None:
            return str(example), EXAMPLE_NAME
        if videos and picked in names:
            return str(Path(videos) / picked), picked
        return None, None

    def run(video_path: str | None, picked: str | None, text: str, opts: str, tokens: Any, with_baseline: bool,
            request: gr.Request, progress: Any = gr.Progress()) -> Iterator[dict[Any, Any]]:
        path, name = source(video_path, picked)
        visitor = getattr(request, "session_hash", None) or "?"
        if video_path:
            visitors.add(visitor, Path(video_path))
        paths = {path: name} if path and name else {}
        if videos:
            paths[str(Path(videos).resolve())] = "(video folder)"
            paths[str(videos)] = "(video folder)"
        request_no = next(requests)
        start = time.perf_counter()
        try:
            for event in in_worker(lambda: session.stages(path, text, opts, budget=tokens,
                                                          baseline=bool(with_baseline), name=name)):
                if isinstance(event, Stage):
                    progress(event.progress, desc=event.name)
                    yield {status: status_html(f"{event.name}…", "stage", request_no)}
                elif isinstance(event, AnswerSoFar):  # the answer as the model writes it
                    yield {results[0]: partial_answer_html("QuoTA", event.text)}
                else:
                    done = f"done in {time.perf_counter() - start:.1f} s"
                    files = visitors.serve(visitor, event)
                    yield {status: status_html(done, "done", request_no),
                           **dict(zip(results, _values(event, session.scorer, files)))}
        except RunStopped:
            yield {status: status_html(f"stopped after {time.perf_counter() - start:.1f} s", "stopped", request_no),
                   **dict(zip(results, _empty_values()))}
        except Exception as exc:  # bad input (QuotaError) or a bug: say it in one line, keep serving
            if not isinstance(exc, QuotaError):
                traceback.print_exc(file=sys.stderr)
            yield {status: status_html(error_line(exc, paths), "error", request_no),
                   **dict(zip(results, _empty_values()))}

    return run


_END = object()


def in_worker(events: Any) -> Iterator[Any]:
    """The items of the iterator ``events()``, produced in a thread of their own (its exception re-raised here).

    A run cancelled from the page abandons this generator, but not the run: the thread goes on to the run's next
    stage, where :meth:`DemoSession.stop` ends it, and so always lets go of the models itself (a run iterated
    in the cancelled handler would hold them until that generator happened to be collected)."""
    out: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            for event in events():
                out.put(event)
        except BaseException as exc:  # handed to the page's handler, which says it in one line
            out.put(exc)
        finally:
            out.put(_END)

    threading.Thread(target=work, name="quota-demo-run", daemon=True).start()
    while (item := out.get()) is not _END:
        if isinstance(item, BaseException):
            raise item
        yield item


def build_app(session: DemoSession, videos: str | Path | None = None, *, served: str | Path | None = None,
              keep_runs: bool = True, example: str | Path | None = None) -> Any:
    """The Gradio Blocks of the demo page for ``session``; ``videos`` is a folder to pick files from.

    Args:
        served: folder for the copies of plans and reports the page offers (inside Gradio's cache folder,
            ``GRADIO_TEMP_DIR``); default: a folder under it.
        keep_runs: keep each run's folder under ``session.out_dir`` when its page is closed (``--out`` given).
        example: a video offered as the click-to-try example (:func:`make_example`).
    """
    import gradio as gr

    names = video_choices(videos)
    served_dir = Path(served) if served else Path(os.environ.get("GRADIO_TEMP_DIR", session.out_dir)) / "served"
    visitors = Visitors(served_dir, keep_runs)
    with gr.Blocks(title="quota demo: where the model looks", analytics_enabled=False,
                   delete_cache=(3600, 6 * 3600)) as app:
        gr.Markdown("## QuoTA: where the model looks\nUpload a video, ask a question: the page shows which "
                    "frames the model is given, how many visual tokens each gets, and the answer.")
        gr.Markdown(about_text(session), elem_id=IDS["about"])
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                ins = _input_column(gr, session, names, example is not None)
            with gr.Column(scale=3, min_width=320):
                outs = _result_column(gr)
        results = [outs[name] for name in RESULTS]
        run = _handler(gr, session, videos, names, outs["status"], results, visitors,
                       Path(example) if example else None)
        inputs = [ins[name] for name in ("video", "pick", "question", "options", "budget", "baseline")]
        for trigger in (ins["ask"].click, ins["question"].submit):  # one queue for both: they share the models
            trigger(run, inputs, [outs["status"], *results], concurrency_limit=1, concurrency_id="quota-models",
                    show_progress_on=[outs["answer"]], js=SCROLL_TO_STATUS)
        # Stop ends the run at its next stage, and the run says so in the status (no Gradio cancel: a
        # cancelled handler could leave the status at a stage that never ends)
        outs["stop"].click(lambda: (session.stop(), None)[1], None, None, queue=False)
        # a picked file replaces an upload, and an upload a picked file
        ins["pick"].change(lambda name: None if name else gr.skip(), ins["pick"], ins["video"])
        ins["video"].upload(lambda _: None, ins["video"], ins["pick"])
        ins["example"].click(lambda: (None, EXAMPLE_NAME, EXAMPLE_QUESTION, EXAMPLE_OPTIONS), None,
                             [ins["video"], ins["pick"], ins["question"], ins["options"]])

        def closed(request: gr.Request) -> None:
            visitors.forget(getattr(request, "session_hash", None) or "?")

        app.unload(closed)
    app.queue(default_concurrency_limit=1)
    return app


def _empty_values() -> list[Any]:
    """What the result components show after an error: nothing stale."""
    return [answer_html("QuoTA", None), answer_html(BASELINE_TITLE, None), "", "", "", "", "", None, None, None]


def _values(result: DemoResult, scorer: str | None = None, files: tuple[str, str] | None = None) -> list[Any]:
    """The result components' values, in the order of :data:`RESULTS`."""
    plan_file, report_file = files or (str(result.plan_path), str(result.report_path))
    return [
        answer_html("QuoTA", result.answer),
        answer_html(BASELINE_TITLE, result.baseline, result.baseline_grid),
        warnings_html(result.warnings),
        objects_html(result, scorer),
        strip_html(result),
        charts_html(result),
        timings_html(result),
        plan_file,
        report_file,
        result.settings,
    ]


def launch(app: Any, *, host: str, port: int, share: bool, out_dir: str | Path,
           videos: str | Path | None = None, block: bool = True, max_upload_mb: float | None = None) -> str:
    """Serve ``app`` on ``host:port`` and return its URL (printed by the caller). ``share`` makes a public
    Gradio link; off unless asked.

    Nothing on disk is opened to the web but Gradio's own cache folder (uploads, and the copies of plans and
    reports the page offers): the ``--videos`` folder and ``out_dir`` are blocked, so their files are read by
    the server for a request but never downloaded. ``max_upload_mb``: the largest upload, in MiB."""
    import gradio as gr

    blocked: Sequence[str] = [str(Path(out_dir).resolve())] + ([str(Path(videos).resolve())] if videos else [])
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    app.launch(server_name=host, server_port=port, share=share, quiet=True, prevent_thread_lock=True,
               allowed_paths=[], blocked_paths=list(blocked), ssr_mode=False, show_error=False, css=CSS,
               theme=theme, inbrowser=False,
               max_file_size=None if max_upload_mb is None else int(max_upload_mb * 1024 * 1024))
    url = getattr(app, "share_url", None) if share else None
    return url or f"http://{_url_host(host)}:{port}/"


def _url_host(host: str) -> str:
    """The host part of the printed URL: where a browser on this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def prepare_environment(workdir: str | Path | None = None) -> None:
    """No telemetry and no update checks from Gradio (set before it is imported); with ``workdir``, Gradio's
    cache (uploads, served files) and its examples cache go there, a folder of this server's own."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_SSR_MODE", "False")
    if workdir is not None:
        os.environ["GRADIO_TEMP_DIR"] = str(Path(workdir) / "gradio")
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(Path(workdir) / "examples")


__all__ = ["build_app", "launch", "error_line", "public_text", "video_choices", "IDS", "CSS", "prepare_environment",
           "make_example", "about_text", "Visitors"]
