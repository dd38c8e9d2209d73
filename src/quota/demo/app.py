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
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import QuotaError
from ..report import timings_text, frame_strip_html, render_charts
from .session import DemoResult, DemoSession, Stage

#: elem_id of each element of the page.
IDS = {
    "video": "quota-video", "pick": "quota-pick", "question": "quota-question", "options": "quota-options",
    "budget": "quota-budget", "baseline": "quota-baseline", "ask": "quota-ask", "status": "quota-status",
    "answer": "quota-answer", "baseline_answer": "quota-baseline-answer", "objects": "quota-objects",
    "charts": "quota-charts", "strip": "quota-strip", "timings": "quota-timings", "settings": "quota-settings",
    "plan_file": "quota-plan-file", "report_file": "quota-report-file",
}
#: Title of the baseline's answer box.
BASELINE_TITLE = "baseline (uniform frames)"
#: Longest side of a picture in the frame strip, in pixels.
STRIP_SIDE = 128

CSS = """
#quota-strip .strip{display:flex;flex-wrap:nowrap;overflow-x:auto;gap:8px;padding-bottom:6px}
#quota-strip figure{margin:0;text-align:center;font-size:.78em;flex:0 0 auto;max-width:150px}
#quota-strip img{display:block;border:2px solid #e7298a;border-radius:3px;margin:0 auto}
#quota-objects span{display:inline-block;background:#eef3fa;border:1px solid #c9d7ea;border-radius:10px;
padding:1px 9px;margin:2px 4px 2px 0;color:#1b3b63}
#quota-charts img{width:100%;height:auto}
.quota-error{color:#b00020;font-weight:600}
.quota-done{color:#1b6b2a}
.quota-answer-text{font-size:1.15em;white-space:pre-wrap}
.quota-choice{display:inline-block;font-weight:700;background:#1b6ca8;color:#fff;border-radius:4px;
padding:0 8px;margin-right:6px}
#quota-timings table{font-variant-numeric:tabular-nums}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def error_line(exc: BaseException) -> str:
    """The line the command line prints for ``exc`` (``quota: error: ...``); anything else (a bug) is named
    by its type on one line too."""
    from .. import commands

    if isinstance(exc, QuotaError):
        return commands.error_line(exc)
    return f"{commands.PROG}: error: internal error ({type(exc).__name__}): {commands.one_line(str(exc))}"


def status_html(text: str, kind: str = "stage", request: int = 0) -> str:
    """The status box: ``kind`` is ``ready``, ``stage`` (a run is in that stage), ``done`` or ``error``;
    ``request`` numbers the page's requests (``data-request``), so a reader can tell two runs apart."""
    return f'<p class="quota-{kind}" data-request="{int(request)}">{_e(text)}</p>'


def answer_html(title: str, answer: Any) -> str:
    """One answer box: a title, the chosen letter (if any) and the text."""
    if answer is None:
        return f"<h3>{_e(title)}</h3><p><em>not asked for</em></p>"
    choice = f'<span class="quota-choice">{_e(answer.choice)}</span>' if answer.choice else ""
    text = answer.text.strip() or "(empty answer)"
    tokens = ""
    if answer.plan is not None:
        tokens = f"<p>{len(answer.plan.keep)} frames, {answer.plan.tokens:,} visual tokens</p>"
    return (f'<h3>{_e(title)}</h3><div class="quota-answer-text" data-choice="{_e(answer.choice or "")}">'
            f'{choice}<span class="quota-answer-body">{_e(text)}</span></div>{tokens}')


def objects_html(result: DemoResult) -> str:
    clue = result.plan.clue
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


def video_choices(folder: str | Path | None) -> list[str]:
    """Names of the video files directly in ``folder``, sorted (none when no folder is given)."""
    if folder is None:
        return []
    from ..eval.benchmarks import VIDEO_EXTENSIONS

    root = Path(folder)
    return sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


#: The result components, in the order :func:`_values` and :func:`_empty_values` fill them.
RESULTS = ("answer", "baseline_answer", "objects", "strip", "charts", "timings", "plan_file", "report_file",
           "settings")


def _input_column(gr: Any, session: DemoSession, videos: str | Path | None, names: list[str]) -> dict[str, Any]:
    """The left column: video, question, options, budget, baseline toggle, the button and the status."""
    return {
        "video": gr.Video(label="video", sources=["upload"], elem_id=IDS["video"]),
        "pick": gr.Dropdown(choices=names, value=None, label=f"or pick a video from {videos}",
                            elem_id=IDS["pick"], visible=bool(names)),
        "question": gr.Textbox(label="question", lines=2, elem_id=IDS["question"]),
        "options": gr.Textbox(label="options (optional, one per line: A. ..., B. ...)", lines=3,
                              elem_id=IDS["options"]),
        "budget": gr.Number(label="token budget (total visual tokens)", value=session.qa.config.budget, precision=0,
                            elem_id=IDS["budget"]),
        "baseline": gr.Checkbox(label="also answer without QuoTA (the baseline), side by side",
                                elem_id=IDS["baseline"]),
        "ask": gr.Button("Ask", variant="primary", elem_id=IDS["ask"]),
        "status": gr.HTML(status_html("ready", "ready"), elem_id=IDS["status"]),
    }


def _result_column(gr: Any) -> dict[str, Any]:
    """The right column: the two answers side by side, then what QuoTA did, the downloads, the settings."""
    out: dict[str, Any] = {}
    with gr.Row():
        out["answer"] = gr.HTML(answer_html("QuoTA", None), elem_id=IDS["answer"], min_height=120)
        out["baseline_answer"] = gr.HTML(answer_html(BASELINE_TITLE, None), elem_id=IDS["baseline_answer"])
    for name in ("objects", "strip", "charts", "timings"):
        out[name] = gr.HTML(elem_id=IDS[name])
    with gr.Row():
        out["plan_file"] = gr.File(label="plan (JSON)", elem_id=IDS["plan_file"], interactive=False)
        out["report_file"] = gr.File(label="report (HTML)", elem_id=IDS["report_file"], interactive=False)
    with gr.Accordion("settings used", open=False):
        out["settings"] = gr.JSON(label="settings", elem_id=IDS["settings"])
    return out


def _handler(gr: Any, session: DemoSession, videos: str | Path | None, names: list[str], status: Any,
             results: list[Any]) -> Any:
    """The function behind Ask: yields the status at each stage, then every result (or the error line)."""
    requests = itertools.count(1)

    def run(video_path: str | None, picked: str | None, text: str, opts: str, tokens: Any, with_baseline: bool,
            progress: Any = gr.Progress()) -> Iterator[dict[Any, Any]]:
        path = video_path or (str(Path(videos) / picked) if videos and picked in names else None)
        request = next(requests)
        start = time.perf_counter()
        try:
            for event in session.stages(path, text, opts, budget=tokens, baseline=bool(with_baseline)):
                if isinstance(event, Stage):
                    progress(event.progress, desc=event.name)
                    yield {status: status_html(f"{event.name}…", "stage", request)}
                else:
                    done = f"done in {time.perf_counter() - start:.1f} s"
                    yield {status: status_html(done, "done", request), **dict(zip(results, _values(event)))}
        except Exception as exc:  # bad input (QuotaError) or a bug: say it in one line, keep serving
            if not isinstance(exc, QuotaError):
                traceback.print_exc(file=sys.stderr)
            yield {status: status_html(error_line(exc), "error", request), **dict(zip(results, _empty_values()))}

    return run


def build_app(session: DemoSession, videos: str | Path | None = None) -> Any:
    """The Gradio Blocks of the demo page for ``session``; ``videos`` is a folder to pick files from."""
    import gradio as gr

    names = video_choices(videos)
    with gr.Blocks(title="quota demo: where the model looks", analytics_enabled=False) as app:
        gr.Markdown("## QuoTA: where the model looks\nUpload a video, ask a question: the page shows which "
                    "frames the model is given, how many visual tokens each gets, and the answer.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                ins = _input_column(gr, session, videos, names)
            with gr.Column(scale=3, min_width=480):
                outs = _result_column(gr)
        results = [outs[name] for name in RESULTS]
        run = _handler(gr, session, videos, names, ins["status"], results)
        inputs = [ins[name] for name in ("video", "pick", "question", "options", "budget", "baseline")]
        for trigger in (ins["ask"].click, ins["question"].submit):  # one queue for both: they share the models
            trigger(run, inputs, [ins["status"], *results], concurrency_limit=1, concurrency_id="quota-models",
                    show_progress_on=[outs["answer"]])
        # a picked file replaces an upload, and an upload a picked file
        ins["pick"].change(lambda name: None if name else gr.skip(), ins["pick"], ins["video"])
        ins["video"].upload(lambda _: None, ins["video"], ins["pick"])
    app.queue(default_concurrency_limit=1)
    return app


def _empty_values() -> list[Any]:
    """What the result components show after an error: nothing stale."""
    return [answer_html("QuoTA", None), answer_html(BASELINE_TITLE, None), "", "", "", "", None, None, None]


def _values(result: DemoResult) -> list[Any]:
    """The result components' values, in the order of :data:`RESULTS`."""
    return [
        answer_html("QuoTA", result.answer),
        answer_html(BASELINE_TITLE, result.baseline),
        objects_html(result),
        strip_html(result),
        charts_html(result),
        timings_html(result),
        str(result.plan_path),
        str(result.report_path),
        result.settings,
    ]


def launch(app: Any, *, host: str, port: int, share: bool, out_dir: str | Path,
           videos: str | Path | None = None, block: bool = True) -> str:
    """Serve ``app`` on ``host:port`` and return its URL (printed by the caller). ``share`` makes a public
    Gradio link; off unless asked."""
    import gradio as gr

    allowed: Sequence[str] = [str(out_dir)] + ([str(videos)] if videos else [])
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    app.launch(server_name=host, server_port=port, share=share, quiet=True, prevent_thread_lock=True,
               allowed_paths=list(allowed), ssr_mode=False, show_error=False, css=CSS, theme=theme,
               inbrowser=False)
    url = getattr(app, "share_url", None) if share else None
    return url or f"http://{_url_host(host)}:{port}/"


def _url_host(host: str) -> str:
    """The host part of the printed URL: where a browser on this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def prepare_environment() -> None:
    """No telemetry and no update checks from Gradio (set before it is imported)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_SSR_MODE", "False")


__all__ = ["build_app", "launch", "error_line", "video_choices", "IDS", "CSS", "prepare_environment"]
