"""Tests of quota.decouple (prompt, parser, Decoupler) and of quota.scoring.question."""

from __future__ import annotations

import json
import logging
import os
import random
import string
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.config import get_config
from quota.decouple import (
    COLOUR_WORDS,
    FILLER_WORDS,
    GENERIC_WORDS,
    NEGATIONS,
    POSITION_WORDS,
    MAX_OBJECT_CHARS,
    MAX_OBJECTS,
    MAX_REASONING_CHARS,
    PROMPT_SENTINEL,
    UNREADABLE,
    Decoupler,
    build_decouple_prompt,
    parse_clue,
)
from quota.choices import option_lines
from quota.errors import ConfigError, ModelError, QuotaError
from quota.scoring.question import NO_LETTER, YES_LETTER, scoring_question
from quota.types import Clue, Plan

# The tests below about our own wording and parser (preset our-prompts) build clues and decouplers with them;
# tests/test_reference_texts.py covers the reference's (the default).
OurClue = partial(Clue, prompts="quota")
OurDecoupler = partial(Decoupler, prompts="quota", parser="quota", max_new_tokens=256)

CORPUS = json.loads((Path(__file__).parent / "data" / "clue_corpus.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ corpus


def test_code_in_model_text_is_never_run(tmp_path, monkeypatch):
    """Model text is data: code in it, wherever it sits, is neither run nor evaluated nor returned as an object.

    The payload would create a file if anything ran it; eval, exec and compile (which ast.literal_eval
    uses) are watched while the corpus's hostile entries and the payload in list, bare and label positions
    are parsed in every mode.
    """
    import builtins

    canary = tmp_path / "ran"
    payload = f"__import__('pathlib').Path({str(canary)!r}).touch()"
    templates = ["{p}", "Step 3: [{p}]", 'Step 3: ["dog", {p}, "cat"]', 'Step 3: ["{q}"]', "Step 3: {p}",
                 "Step 2: yes\nStep 3: [(lambda: {p})()]", "Objects: dog, {p}", "eval(compile({r}, '<x>', 'exec'))",
                 "Step 3: [f\"{{{p}}}\"]"]
    texts = [t.format(p=payload, q=payload.replace('"', "'"), r=repr(payload)) for t in templates]
    hostile = [e["text"] for e in CORPUS if e["name"].startswith("hostile")]
    assert sum("__import__(" in t or "eval(" in t for t in hostile) >= 4  # the corpus still carries code
    called: list[str] = []
    for name in ("eval", "exec", "compile"):
        real = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _n=name, _f=real, **k: called.append(_n) or _f(*a, **k))
    for text in texts + hostile:
        for mode in ("entity", "event", "none"):
            clue = parse_clue(text, mode=mode)
            _check_limits(clue, mode)
            assert not any("import" in o or "lambda" in o for o in clue.objects or ()), (text, clue.objects)
    monkeypatch.undo()
    assert called == [] and not canary.exists()


@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
def test_corpus_entry(entry):
    clue = parse_clue(entry["text"], mode=entry["mode"])
    expected = None if entry["objects"] is None else tuple(entry["objects"])
    assert clue.objects == expected
    assert clue.mode == entry["mode"]
    assert clue.reasoning == entry["text"][:MAX_REASONING_CHARS]
    if clue.objects is not None:
        assert 1 <= len(clue.objects) <= MAX_OBJECTS
        assert all(0 < len(o) <= MAX_OBJECT_CHARS and o == o.strip() for o in clue.objects)


# ------------------------------------------------------------------ parser details


def test_hostile_text_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    calls = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    hostile = [
        f"__import__('os').system('touch {marker}')",
        f"Step 3: [__import__('os').system('touch {marker}')]",
        f"Step 3: [\"dog\", open('{marker}', 'w').write('x')]",
        f"Final: {{__import__('pathlib').Path('{marker}').touch()}}",
        f"[exec(\"open('{marker}','w')\")]",
    ]
    for text in hostile:
        clue = parse_clue(text)
        assert clue.objects in (None, ("dog",))
        assert clue.reasoning == text
    assert calls == []
    assert not marker.exists()


def test_quoted_item_over_limit_is_cut_at_a_word():
    name = "very long name of a thing " * 4  # 104 characters
    clue = parse_clue(f'Step 3: ["{name}", "cup"]')
    assert clue.objects is not None and len(clue.objects) == 2
    first = clue.objects[0]
    assert len(first) <= MAX_OBJECT_CHARS
    assert name.startswith(first) and not first.endswith(" ")
    assert clue.objects[1] == "cup"


def test_bare_prose_items_are_dropped():
    assert parse_clue("Step 3: we should look for whatever the man is holding in his hand").objects is None


def test_reasoning_is_bounded_and_raw():
    text = 'Step 3: ["dog"]\n' + "x" * (3 * MAX_REASONING_CHARS)
    clue = parse_clue(text)
    assert clue.objects == ("dog",)
    assert len(clue.reasoning) == MAX_REASONING_CHARS
    assert clue.reasoning == text[:MAX_REASONING_CHARS]


def test_non_string_inputs():
    assert parse_clue(None).objects is None
    assert parse_clue(b'Step 3: ["dog"]').objects == ("dog",)
    assert parse_clue(['Step 3: ["cat"]', "ignored"]).objects == ("cat",)
    assert parse_clue([]).objects is None


def test_mode_none_never_reads_objects():
    clue = parse_clue('Step 3: ["dog"]', mode="none")
    assert clue == Clue(objects=None, reasoning='Step 3: ["dog"]', mode="none")


def test_unknown_mode_is_config_error():
    with pytest.raises(ConfigError, match="objects"):
        parse_clue("x", mode="objects")


def test_entity_and_event_filters_differ():
    text = 'Step 3: ["the red car", "left", "a man running"]'
    assert parse_clue(text, mode="entity").objects == ("red car", "man running")
    assert parse_clue(text, mode="event").objects == ("the red car", "left", "a man running")


def test_whole_prompt_echo_is_skipped():
    prompt = build_decouple_prompt("What is the boy eating?")
    clue = parse_clue(prompt + '\nStep 1: yes\nStep 2: ["boy", "sandwich"]\nStep 3: ["sandwich"]')
    assert clue.objects == ("sandwich",)
    # A chat transcript that wraps the prompt is handled the same way.
    clue = parse_clue(f"user\n{prompt}\nassistant\nStep 1: no\nStep 2: null\nStep 3: null")
    assert clue.objects is None


def test_clue_round_trips_through_json():
    clue = parse_clue('Step 3: ["dog", "caf\\u00e9"]')
    assert Clue.from_dict(json.loads(json.dumps(clue.to_dict()))) == clue


# ------------------------------------------------------------------ fuzzing

_FRAGMENTS = st.sampled_from(
    [
        "[", "]", "[[", "]]", '"', "'", "“", "”", "‘", "’", ",", ", ", ";", ":", " ", "\n", "\\", "\\u00",
        "\\u12", "(", ")", "{", "}", "Step 1:", "Step 2:", "Step 3:", "step three:", "Final:", "STEP 3 -",
        "yes", "no", "null", "None", "[]", "dog", "red car", "video", "the ", "a ", "left", "```", "**",
        "- ", "1. ", "Question:", "Example 9", PROMPT_SENTINEL, "__import__('os').system('ls')", "eval(",
        "and ", "x" * 70, "word " * 20, "Ünïcödé", "\x00", "\t",
    ]
)
_LISTISH = st.builds(
    lambda items, q, open_, close: open_ + ", ".join(f"{q}{i}{q}" for i in items) + close,
    st.lists(st.text(max_size=80), max_size=40),
    st.sampled_from(['"', "'", "", "“"]),
    st.sampled_from(["[", "Step 3: [", "Step 2: (", "", "Final: ["]),
    st.sampled_from(["]", "", "]]", ")"]),
)
_ANY_TEXT = st.one_of(
    st.text(max_size=400),
    st.lists(_FRAGMENTS, max_size=60).map("".join),
    _LISTISH,
    st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=40).map("".join),
)


def _check_limits(clue: Clue, mode: str) -> None:
    assert isinstance(clue, Clue)
    assert clue.mode == mode
    assert isinstance(clue.reasoning, str) and len(clue.reasoning) <= MAX_REASONING_CHARS
    if clue.objects is not None:
        assert isinstance(clue.objects, tuple)
        assert 1 <= len(clue.objects) <= MAX_OBJECTS
        keys = [o.casefold() for o in clue.objects]
        assert len(keys) == len(set(keys))
        for o in clue.objects:
            assert isinstance(o, str) and 0 < len(o) <= MAX_OBJECT_CHARS
            assert o == o.strip()
            assert "(" not in o and "__" not in o


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_ANY_TEXT, mode=st.sampled_from(["entity", "event", "none"]))
def test_fuzz_parse_never_raises_and_respects_limits(text, mode):
    _check_limits(parse_clue(text, mode=mode), mode)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.text(min_size=1, max_size=200), min_size=0, max_size=60))
def test_fuzz_json_lists(items):
    clue = parse_clue("Step 3: " + json.dumps(items))
    _check_limits(clue, "entity")


# Object names no filter touches, names made up here (a prefix no filter list holds), and words the parser
# documents as never worth searching for (the recording itself, a bare colour or position, a vague word).
_NOUNS = ("dog", "ball", "guitar", "bicycle", "apple", "basket", "girl", "horse", "kite", "piano", "bottle",
          "camera", "hammer", "rabbit", "umbrella", "violin", "window", "zebra", "pencil", "rocket")
_DROPPED = ("video", "frames", "red", "left", "something")


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=12),
        min_size=1,
        max_size=30,
    )
)
def test_fuzz_clean_lists_come_back_in_order(items):
    # The oracle is the documented rule: a quoted one-word name is kept unless it is one of our
    # filter words (or a negation); the first spelling is kept, then at most MAX_OBJECTS.
    dropped = GENERIC_WORDS | COLOUR_WORDS | POSITION_WORDS | FILLER_WORDS | NEGATIONS
    clue = parse_clue("Step 3: " + json.dumps(items))
    expected = list(dict.fromkeys(w for w in items if w not in dropped))
    assert clue.objects == (tuple(expected[:MAX_OBJECTS]) or None)


def test_long_hostile_inputs_terminate():
    for text in ["[" * 30000, '["' * 15000, "- " + " " * 25000 + "x", "Step 3: " + "dog, " * 6000, "\\" * 30000]:
        _check_limits(parse_clue(text), "entity")


# ------------------------------------------------------------------ prompt


def test_prompt_embeds_question_and_options():
    q = "What does the girl put into the red basket?"
    p = build_decouple_prompt(q, ["apples", "oranges", "C. bread", "(D) milk"])
    assert q in p
    assert "A. apples" in p and "B. oranges" in p and "C. bread" in p and "D. milk" in p  # labels normalised
    assert p.index(PROMPT_SENTINEL) < p.index(q)
    for step in ("Step 1", "Step 2", "Step 3"):
        assert step in p
    assert "null" in p


def test_prompt_without_options_has_no_options_block_after_the_question():
    p = build_decouple_prompt("Where is the cat?")
    tail = p[p.index(PROMPT_SENTINEL):]
    assert "Options:" not in tail
    assert "Question: Where is the cat?" in tail


def test_prompt_options_as_mapping():
    assert option_lines({"A": "yes", "B": "no"}) == ["A. yes", "B. no"]
    assert "B. no" in build_decouple_prompt("Is it raining?", {"A": "yes", "B": "no"})


def test_prompt_modes_differ():
    entity = build_decouple_prompt("Why did the crowd cheer?")
    event = build_decouple_prompt("Why did the crowd cheer?", mode="event")
    assert entity != event
    assert "physical" in entity and "events" in event
    assert entity == build_decouple_prompt("Why did the crowd cheer?", mode="entity")


def test_prompt_examples_parse_back_to_their_step3():
    # The worked examples in the prompt follow the grammar the parser reads.
    for mode in ("entity", "event"):
        p = build_decouple_prompt("q", mode=mode)
        examples = p[: p.index(PROMPT_SENTINEL)].split("\nExample ")[1:]
        assert len(examples) == 3
        for ex in examples:
            step3 = ex[ex.index("Step 3:"):].splitlines()[0]
            expected = json.loads(step3.split(":", 1)[1])
            clue = parse_clue(ex, mode=mode)
            if expected is None:
                assert clue.objects is None
            else:
                got = parse_clue(step3, mode=mode).objects
                assert clue.objects == got and got is not None and len(got) == len(expected)


def test_prompt_bad_input():
    with pytest.raises(ConfigError):
        build_decouple_prompt("q", mode="none")
    with pytest.raises(ConfigError):
        build_decouple_prompt("q", mode="objects")
    with pytest.raises(ConfigError, match="string"):
        build_decouple_prompt(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list"):
        build_decouple_prompt("q", options="A. yes B. no")  # type: ignore[arg-type]


# ------------------------------------------------------------------ scoring question


def test_scoring_question_with_objects():
    clue = OurClue(objects=("dog", "red ball"))
    q = scoring_question(clue, "What does the dog fetch?")
    assert "dog, red ball" in q
    assert f"{YES_LETTER}. Yes" in q and f"{NO_LETTER}. No" in q
    assert q.index(f"{YES_LETTER}. Yes") < q.index(f"{NO_LETTER}. No")
    assert "What does the dog fetch?" not in q
    assert q.rstrip().endswith("only.")
    assert "letter" in q.splitlines()[-1]


def test_scoring_question_event_mode_differs():
    entity = scoring_question(OurClue(objects=("man jumping",), mode="entity"), "q")
    event = scoring_question(OurClue(objects=("man jumping",), mode="event"), "q")
    assert entity != event and "man jumping" in event and "taking place" in event


def test_scoring_question_without_objects_asks_about_the_question():
    question = "What is the overall mood of the video?"
    for clue in (OurClue(objects=None), OurClue(objects=None, mode="none"), OurClue(objects=())):
        q = scoring_question(clue, question)
        assert question in q
        assert "enough" in q
        assert f"{YES_LETTER}. Yes\n{NO_LETTER}. No" in q
        assert q.splitlines()[-1] == f"Reply with the letter {YES_LETTER} or {NO_LETTER} only."


def test_scoring_question_objects_with_commas_use_semicolons():
    q = scoring_question(OurClue(objects=("salt, pepper", "bowl")), "q")
    assert "salt, pepper; bowl" in q


def test_scoring_question_needs_a_question():
    with pytest.raises(ConfigError, match="question"):
        scoring_question(OurClue(objects=None))
    with pytest.raises(ConfigError, match="question"):
        scoring_question(None)
    with_q = OurClue(objects=None, question="Who wins the race?")
    assert "Who wins the race?" in scoring_question(with_q)
    assert "Who loses?" in scoring_question(with_q, "Who loses?")


@pytest.mark.parametrize(
    "clue",
    [OurClue(objects=("dog", "red ball")), OurClue(objects=("man jumping",), mode="event"), OurClue(objects=None),
     OurClue(objects=("a\nC. maybe",)), OurClue(objects=None, mode="none")],
    ids=["entity", "event", "none", "object-with-option-line", "no-clue"],
)
def test_scoring_question_keeps_the_papers_two_option_structure(clue):
    """Two options, A = yes then B = no, however many option lines the user's question carries."""
    import re

    question = "Which pet appears?\nA. a cat\nB. a dog\nC. a bird\nAnswer with the option's letter."
    q = scoring_question(clue, question)
    lettered = [line for line in q.splitlines() if re.match(r"^\s*[A-Z][.)]\s", line)]
    assert lettered == [f"{YES_LETTER}. Yes", f"{NO_LETTER}. No"] and YES_LETTER == "A"
    lines = q.splitlines()
    assert lines[-3:] == [f"{YES_LETTER}. Yes", f"{NO_LETTER}. No", f"Reply with the letter {YES_LETTER} or {NO_LETTER} only."]
    if not clue.objects:
        assert "Which pet appears? A. a cat B. a dog C. a bird" in q  # folded onto one line, words kept


def test_letters_label_the_options_in_order():
    q = scoring_question(OurClue(objects=("dog",)), "q")
    lines = q.splitlines()
    assert YES_LETTER != NO_LETTER
    assert lines[1] == f"{YES_LETTER}. Yes" and lines[2] == f"{NO_LETTER}. No"


def test_every_scoring_question_offers_yes_under_the_yes_letter():
    """Every scoring question offers "Yes" under YES_LETTER and "No" under NO_LETTER (the paper's A / B),
    and its reply line asks for exactly those two letters: the scorer reads the probability of YES_LETTER."""
    import re

    assert (YES_LETTER, NO_LETTER) == ("A", "B")  # the paper's letters
    variants = [
        scoring_question(OurClue(objects=("red car", "dog"), question="q?")),
        scoring_question(OurClue(objects=("a dog jumping",), mode="event", question="q?")),
        scoring_question(OurClue(objects=None, question="What is the man holding?")),
        scoring_question(OurClue(objects=None), "What is the man holding?"),
    ]
    for text in variants:
        options = dict(re.findall(r"^([A-Z])\. (Yes|No)$", text, flags=re.MULTILINE))
        assert options == {YES_LETTER: "Yes", NO_LETTER: "No"}, text
        (reply,) = [line for line in text.splitlines() if line.startswith("Reply")]
        assert re.findall(r"\b[A-Z]\b", reply) == [YES_LETTER, NO_LETTER], reply


# ------------------------------------------------------------------ Decoupler


def test_decoupler_runs_the_prompt_through_the_callable():
    seen = []

    def generate(prompt: str) -> str:
        seen.append(prompt)
        return 'Step 1: yes\nStep 2: ["girl", "basket", "red"]\nStep 3: ["girl", "basket"]'

    d = OurDecoupler(generate)
    clue = d("What does the girl put into the red basket?", ["apples", "bread"])
    assert clue.objects == ("girl", "basket") and clue.mode == "entity"
    assert clue.question == "What does the girl put into the red basket?"
    assert seen == [build_decouple_prompt("What does the girl put into the red basket?", ["apples", "bread"])]
    assert d.prompt("What does the girl put into the red basket?", ["apples", "bread"]) == seen[0]


def test_decoupler_passes_max_new_tokens_when_accepted():
    got = {}

    def generate(prompt: str, max_new_tokens: int = 1) -> str:
        got["n"] = max_new_tokens
        return "Step 3: null"

    def generate_kwargs(prompt: str, **kwargs) -> str:
        got["kw"] = kwargs
        return 'Step 3: ["x-ray machine"]'

    assert OurDecoupler(generate, max_new_tokens=77)("q").objects is None
    assert got["n"] == 77
    assert OurDecoupler(generate_kwargs, max_new_tokens=12)("q").objects == ("x-ray machine",)
    assert got["kw"] == {"max_new_tokens": 12}
    # Builtins and callables without the keyword get the prompt alone.
    assert OurDecoupler(str.upper)("q").objects is None


def test_decoupler_strips_exact_prompt_echo():
    def echo(prompt: str) -> str:
        return prompt + '\nStep 1: yes\nStep 2: ["kite"]\nStep 3: ["kite"]'

    assert OurDecoupler(echo)("What is flying?").objects == ("kite",)


def test_decoupler_event_mode():
    seen = []

    def generate(prompt: str) -> str:
        seen.append(prompt)
        return 'Step 3: ["a man opening a door"]'

    clue = OurDecoupler(generate, mode="event")("What happens after he enters?")
    assert clue == OurClue(
        objects=("a man opening a door",),
        reasoning='Step 3: ["a man opening a door"]',
        mode="event",
        question="What happens after he enters?",
    )
    assert seen[0] == build_decouple_prompt("What happens after he enters?", mode="event")


def test_decoupler_mode_none_never_calls_the_model():
    def boom(prompt: str) -> str:
        raise AssertionError("must not be called")

    clue = OurDecoupler(boom, mode="none")("  What is happening? ")
    assert clue == OurClue(objects=None, reasoning="", mode="none", question="What is happening?")
    # The scorer can then build its question from the clue alone.
    assert scoring_question(clue) == scoring_question(OurClue(objects=None), "What is happening?")


def test_decoupler_failure_falls_back_with_warning(caplog):
    def broken(prompt: str) -> str:
        raise RuntimeError("CUDA out of memory")

    with caplog.at_level(logging.WARNING, logger="quota.decouple"):
        clue = OurDecoupler(broken)("Where is the cat?")
    assert clue.objects is None and clue.mode == "entity" and clue.question == "Where is the cat?"
    assert "RuntimeError" in clue.reasoning and "CUDA out of memory" in clue.reasoning
    assert any("CUDA out of memory" in r.getMessage() for r in caplog.records)


def test_decoupler_strict_raises_model_error():
    def broken(prompt: str) -> str:
        raise RuntimeError("tokenizer missing")

    with pytest.raises(ModelError, match="tokenizer missing") as info:
        OurDecoupler(broken, strict=True)("Where is the cat?")
    assert isinstance(info.value, QuotaError)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_decoupler_odd_outputs():
    assert OurDecoupler(lambda p: None)("q").objects is None
    assert OurDecoupler(lambda p: ['Step 3: ["cat"]'])("q").objects == ("cat",)
    assert OurDecoupler(lambda p: 42)("q").objects is None
    assert OurDecoupler(lambda p: "__import__('os').system('rm -rf /')")("q").objects is None


def test_decoupler_bad_construction_and_input():
    with pytest.raises(ConfigError):
        OurDecoupler("not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        OurDecoupler(str, mode="objects")
    with pytest.raises(ConfigError):
        OurDecoupler(str, max_new_tokens=0)
    # A bad question is the caller's bug: raised, not swallowed by the fallback.
    with pytest.raises(ConfigError):
        OurDecoupler(lambda p: "null")(123)  # type: ignore[arg-type]


def test_decoupler_from_config():
    cfg = get_config("event", decouple_max_new_tokens=99)
    d = Decoupler.from_config(lambda p: "null", cfg)
    assert (d.mode, d.max_new_tokens, d.prompts, d.parser) == ("event", 99, "quota", "quota")
    d = Decoupler.from_config(lambda p: "null", get_config("paper"))
    assert (d.mode, d.max_new_tokens, d.prompts, d.parser) == ("entity", 4096, "paper", "paper")
    with pytest.raises(ConfigError, match="event"):
        get_config("paper", decouple="event")


def test_decoupler_keyboard_interrupt_propagates():
    def interrupted(prompt: str) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        OurDecoupler(interrupted)("q")


_TEXT_AS_CODE_MODULES = frozenset({"ast", "pickle", "marshal", "subprocess"})


def _unsafe_calls(source: str, banned_imports: frozenset[str] = frozenset()) -> list[str]:
    """Calls in ``source`` that run or parse text as Python (eval, exec, compile, __import__, literal_eval,
    also as ``builtins.eval``; pickle and marshal loads), and imports of ``banned_imports``.
    ``re.compile`` and a module's ``.eval()`` are fine."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in {"eval", "exec", "compile", "__import__", "literal_eval"}:
                found.append(f"{func.id}() at line {node.lineno}")
            elif isinstance(func, ast.Attribute) and (
                func.attr in {"literal_eval", "__import__"}
                or (isinstance(func.value, ast.Name) and (
                    (func.value.id in {"builtins", "__builtins__"} and func.attr in {"eval", "exec", "compile"})
                    or (func.value.id in {"pickle", "marshal"} and func.attr in {"load", "loads"})
                ))
            ):
                found.append(f"{func.attr}() at line {node.lineno}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {a.name.split(".")[0] for a in node.names}
            names.add((getattr(node, "module", None) or "").split(".")[0])
            found += [f"import {n} at line {node.lineno}" for n in sorted(names & banned_imports)]
    return found


def test_no_eval_in_module_source():
    """No module of quota runs text as code; the parser of model output does not even import a way to."""
    import quota
    import quota.decouple as mod

    # the check finds what it looks for
    for bad in ["x = eval(text)", "exec(code)", "compile(s, '<s>', 'exec')", "__import__(name)",
                "import ast\nast.literal_eval(s)", "from ast import literal_eval\nliteral_eval(s)",
                "import builtins\nbuiltins.eval(s)", "import pickle\npickle.loads(b)", "marshal.load(f)"]:
        assert _unsafe_calls(bad), bad
    for bad in ["import pickle", "from marshal import loads", "import subprocess", "from ast import parse"]:
        assert _unsafe_calls(bad, _TEXT_AS_CODE_MODULES), bad
    assert _unsafe_calls("import re\nre.compile('x')\nmodel.eval()\nevaluate(x)", _TEXT_AS_CODE_MODULES) == []

    modules = sorted(Path(quota.__file__).parent.rglob("*.py"))
    assert len(modules) > 20 and Path(mod.__file__) in modules
    for path in modules:
        assert _unsafe_calls(path.read_text(encoding="utf-8")) == [], path
    assert _unsafe_calls(Path(mod.__file__).read_text(encoding="utf-8"), _TEXT_AS_CODE_MODULES) == []


# ------------------------------------------------------------------ random text, other scripts, failures

_VOCAB = (
    "the a of and to in is was he she it they we you that this with for on as at by from or but not dog cat man "
    "woman car house tree river table chair door window book phone cup bottle ball boat road city run runs walk "
    "jump open close eat drink see look take give make go come sit stand hold throw catch red blue green big "
    "small old new fast slow happy sad quickly slowly very really then there here now one two three first last "
    "next yes no maybe why how what when where who which because so if light dark night day water fire stone "
    "glass paper music song game team player kitchen"
).split()
_STRAY = ["[", "]", '"', "'", "“", "”", "(", ")", "{", "}", ",", ".", ":", ";"]


def _random_ascii(rng: random.Random) -> str:
    return "".join(rng.choice(string.printable) for _ in range(rng.randint(8, 120)))


def _word_salad(rng: random.Random) -> str:
    """Random words with stray brackets, quotes and punctuation stuck to some of them (at least one
    bracket or quote)."""
    words = []
    for _ in range(rng.randint(4, 30)):
        w, r = rng.choice(_VOCAB), rng.random()
        words.append(rng.choice(_STRAY) + w if r < 0.12 else w + rng.choice(_STRAY) if r < 0.24 else w)
    text = " ".join(words)
    if not any(c in text for c in "[]\"'“”(){}"):
        words[rng.randrange(len(words))] += rng.choice(['"', "[", "'", "]"])
        text = " ".join(words)
    return text


@pytest.mark.parametrize("mode", ["entity", "event"])
@pytest.mark.parametrize("make", [_random_ascii, _word_salad], ids=["random_ascii", "word_salad"])
def test_random_text_gives_no_objects(make, mode):
    rng = random.Random(12)
    texts = [make(rng) for _ in range(200)]
    named = [(t, parse_clue(t, mode=mode).objects) for t in texts]
    named = [(t, o) for t, o in named if o is not None]
    assert named == []
    # Random text says neither a list nor null: recorded as a failed decoupling.
    assert all(parse_clue(t, mode=mode).failed for t in texts[:50])


def test_real_lists_among_random_words_are_still_read():
    # The control for the test above: the same vocabulary, written as an answer, is read.
    rng = random.Random(3)
    nouns = [w for w in _VOCAB if w in {"dog", "cat", "car", "house", "tree", "river", "table", "boat", "phone"}]
    for _ in range(50):
        picked = rng.sample(nouns, rng.randint(1, 4))
        assert parse_clue("Step 3: " + json.dumps(picked)).objects == tuple(picked)
        assert parse_clue(json.dumps(picked)).objects == tuple(picked)
        assert parse_clue(", ".join(picked)).objects == tuple(picked)
        assert parse_clue("Objects:\n" + "\n".join(f"- {w}" for w in picked)).objects == tuple(picked)


@pytest.mark.parametrize("text, objects", [
    ('Step 3: ["猫", "沙发"]', ("猫", "沙发")),
    ('Step 3: ["犬", "車", "公園"]', ("犬", "車", "公園")),
    ("Step 3: 猫、沙发", ("猫", "沙发")),
    ("步骤3：[\"猫\"，\"狗\"]", ("猫", "狗")),
    ("Step 3: 「猫」、「テーブル」", ("猫", "テーブル")),
    ('Step 3: ["개", "고양이"]', ("개", "고양이")),
    ('["人", "的"]', ("人", "的")),
    ('Step 3: ["x", "猫"]', ("猫",)),  # one Latin letter is no name, one ideograph is
])
def test_one_character_words_of_cjk_scripts_are_kept(text, objects):
    clue = parse_clue(text)
    assert clue.objects == objects and not clue.failed


def test_failed_and_empty_decouplings_differ():
    assert parse_clue("Step 1: no\nStep 2: null\nStep 3: null").error is None
    assert parse_clue("[]").error is None and parse_clue("Step 3: []").error is None
    assert parse_clue('Step 3: ["video"]').error is None  # named only what our filters drop
    assert parse_clue('Step 3: ["dog"]').error is None
    for unreadable in ("", "Step 1: ye", "I think the answer is B.", "Step 3: ["):
        clue = parse_clue(unreadable)
        assert clue.objects is None and clue.failed and clue.error == UNREADABLE


def test_failed_decoupling_is_kept_in_plan_json_and_the_results_store(tmp_path):
    def broken(prompt: str) -> str:
        raise RuntimeError("CUDA out of memory")

    clue = Decoupler(broken)("Where is the cat?")
    assert clue.failed and "CUDA out of memory" in clue.error
    assert Clue.from_dict(json.loads(json.dumps(clue.to_dict()))) == clue
    assert Clue.from_dict({"objects": None}).error is None  # JSON from before the field
    plan = Plan(indices=[0, 1], timestamps=[0.0, 1.0], scores=[1.0, 1.0], weights=[0.5, 0.5],
                grids=[(2, 2), (2, 2)], budget=8, native=(4, 4), clue=clue, question="Where is the cat?")
    again = Plan.from_json(plan.to_json())
    assert again.clue == clue and again.clue.failed
    assert plan.summary()["decouple_error"] == clue.error
    ok = Plan.from_dict({**plan.to_dict(), "clue": Clue(objects=None, question="q").to_dict()})
    assert ok.summary()["decouple_error"] is None

    from quota.eval.store import RunStore

    store = RunStore(tmp_path / "run", {"benchmark": "test"})
    store.record("q1", prediction="A", choice="A", answer="A", plan=plan.summary())
    store.close()
    (row,) = RunStore(tmp_path / "run", {"benchmark": "test"}).results()
    assert row.plan["decouple_error"] == clue.error and row.plan["objects"] is None


def test_a_list_opening_with_a_null_word_is_still_a_list():
    assert parse_clue('Step 3: ["nil", "dog"]').objects == ("dog",)
    assert parse_clue('Step 3: ["none of the cups", "table"]').objects == ("table",)
    assert parse_clue('"no parking sign", "car"').objects == ("car",)
    assert parse_clue("Step 3: none").objects is None and parse_clue("- null").objects is None


def test_after_a_step_marker_parts_that_are_no_names_are_skipped():
    # The model answered (a marker is there): keep what reads as names, drop the rest.
    assert parse_clue("Step 3: man, dog (the main subjects)").objects == ("man",)
    assert parse_clue("Step 3: [kite, x=1, beach]").objects == ("kite", "beach")
    # Without a marker the same line is not a list of names at all.
    assert parse_clue("man, dog (the main subjects)").objects is None


@pytest.mark.parametrize("text", ["Step 3:\n- cat\n- dog", "Step 3: - cat\n- dog", "Step 3:\n\n* cat\n* dog\n"])
def test_the_first_bullet_after_a_marker_is_kept(text):
    assert parse_clue(text).objects == ("cat", "dog")


def test_a_dash_before_a_single_line_is_still_dropped():
    assert parse_clue("Step 3: - cat, dog").objects == ("cat", "dog")


@pytest.mark.timeout(60)  # a hang guard, not a speed measurement: the old pattern never finished on these
@pytest.mark.parametrize("mode", ["entity", "event"])
def test_a_long_run_of_letters_does_not_hang_the_parser(mode):
    """The label pattern once backtracked over every way to cut a run of letters into five words: a 100-letter
    line took seconds, and a model's 20,000 letters would never finish."""
    for text in ("Step 3: " + "a" * 20_000, "b" * 20_000, "Objects " + "c" * 20_000):
        objects = parse_clue(text, mode=mode).objects
        assert objects is None or len(objects) <= 1
