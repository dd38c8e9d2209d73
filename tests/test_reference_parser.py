"""The reference's reading of the chain of thought, without ever running model text.

Oracle: the reference's own steps (``quota_pipeline.py``: lower-case, first ``step 1: (yes|no)``, first
``step 3: (\\[[^\\]]*\\])``), with its ``eval`` replaced by ``ast.literal_eval`` — which evaluates literals only — and
the rule that only a list of strings is used. Where the reference would get a list of strings we must give the
same objects; everywhere else (its ``eval`` would raise, run code, or give something that is not a list of
strings) we must give no objects.
"""

from __future__ import annotations

import ast
import json
import random
import re
import warnings
from pathlib import Path

import pytest

from quota.decouple import Decoupler, UNREADABLE, parse_reference_clue, reference_answer_complete
from quota.pyliteral import read_string_list

CORPUS = json.loads((Path(__file__).parent / "data" / "reference_cot_corpus.json").read_text(encoding="utf-8"))
CANARY = Path("/tmp/quota-canary-ref")


def literal_string_list(text: str) -> list[str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences warn, as in the reference
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def reference_objects(out: str) -> list[str] | None:
    """What quota_pipeline.py would score with: the objects, or None for the no-object question."""
    out = out.lower()
    step1 = re.search(r"step 1: (yes|no)", out)
    if step1 and step1.group(1) == "yes":
        step3 = re.search(r"step 3: (\[[^\]]*\])", out)
        if step3:
            return literal_string_list(step3.group(1)) or None
    return None


def test_the_corpus_is_large_and_varied():
    assert len(CORPUS) >= 40
    with_objects = [c for c in CORPUS if reference_objects(c["text"])]
    assert 15 <= len(with_objects) <= len(CORPUS) - 15  # both outcomes well represented


@pytest.mark.parametrize("case", CORPUS, ids=[c["note"] for c in CORPUS])
def test_paper_parser_agrees_with_the_reference(case):
    CANARY.unlink(missing_ok=True)
    clue = parse_reference_clue(case["text"])
    expected = reference_objects(case["text"])
    assert clue.objects == (tuple(expected) if expected else None)
    assert not CANARY.exists()  # nothing was run
    if clue.objects is None and clue.error is None:  # "no objects" without a failure means Step 1 said no or []
        step1 = re.search(r"step 1: (yes|no)", case["text"].lower())
        assert step1 is not None


def test_objects_are_lower_cased_and_kept_as_written():
    clue = parse_reference_clue('Step 1: Yes\nStep 3: ["Man", "Box", " Man "]')
    assert clue.objects == ("man", "box", " man ") and clue.error is None
    assert parse_reference_clue("Step 1: no").error is None
    assert parse_reference_clue("Step 1: yes\nStep 3: [Man]").error == UNREADABLE


def test_the_reader_matches_literal_eval_on_random_text():
    rng = random.Random(17)
    alphabet = list("\"'[](),# \n\\abrufx0147{}N+.")
    found = 0
    for _ in range(5000):
        text = "[" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) + "]"
        expected = literal_string_list(text)
        if expected is not None and any(0xD800 <= ord(c) <= 0xDFFF for item in expected for c in item):
            continue  # lone surrogates: refused on purpose (no tokenizer can encode them)
        assert read_string_list(text) == expected, text
        found += expected is not None
    assert found > 200  # the random texts hold many real lists too


@pytest.mark.parametrize("text, expected", [
    ('["a", "b"]', ["a", "b"]), ("[]", []), ('[("a")]', ["a"]), ('["a" "b"]', ["ab"]), ("[r'a\\b']", ["a\\b"]),
    ('["\\x41\\101\\u00e9"]', ["AAé"]), ('[("a",)]', None), ('["a" + "b"]', None), ("[b'a']", None),
    ("[f'a']", None), ("[a]", None), ('["\\ud800"]', None), ('["a"] x', None), ("[" + "(" * 300 + "'a'" + ")" * 300 + "]", None),
])
def test_read_string_list_examples(text, expected):
    assert read_string_list(text) == expected


def _prefixes(text: str) -> list[str]:
    return [text[:k] for k in range(len(text) + 1)]


@pytest.mark.parametrize("case", CORPUS, ids=[c["note"] for c in CORPUS])
def test_early_stop_is_result_neutral(case):
    """Wherever the stopping rule says the answer is complete, the reading of that prefix is the reading of the
    whole text (and of any text that goes on from it: the corpus texts are their own continuations)."""
    full = parse_reference_clue(case["text"])
    stopped = False
    for prefix in _prefixes(case["text"]):
        if reference_answer_complete(prefix):
            stopped = True
            assert parse_reference_clue(prefix).objects == full.objects, prefix
            assert parse_reference_clue(prefix).error == full.error, prefix
    if full.objects is not None:
        assert stopped  # a readable list always ends the generation early


def test_the_decoupler_stops_where_the_rule_says_and_reads_the_same():
    text = 'Step 1: yes\nStep 2: ["dog", "ball"]\nStep 3: ["dog", "ball"]\nStep 4: more words the model keeps writing'
    calls: list[int] = []

    def generate(prompt: str, max_new_tokens: int = 0, stop=None) -> str:
        for k in range(1, len(text) + 1):  # one character per "token"
            if stop is not None and stop(text[:k]):
                calls.append(k)
                return text[:k]
        return text

    stopped = Decoupler(generate, early_stop=True)("Which toy does the dog chase?")
    assert calls and calls[0] == text.index("]\nStep 4") + 1  # right after the Step 3 list
    assert stopped.objects == Decoupler(generate, early_stop=False)("Which toy does the dog chase?").objects
    assert stopped.objects == ("dog", "ball")
