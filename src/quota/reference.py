"""Every text a model reads under the reference settings (``prompts="paper"``, ``chat_template="paper"``).

The QuoTA reference implementation (public repository MAC-AutoML/QuoTA) is the ground truth for the preset
``paper``: its prompts are interface text, facts of the experiment, so they are reproduced here byte for byte
(typos included), each with a comment naming the file it comes from. Nothing else in quota spells them out;
the decoupler, the scorers and the model adapters ask this module.

The "query" is what the reference puts in front of its decoupling instruction and into its no-object frame
question: the question followed by its options on the same line, as the reference's own example writes it
(``"What's the man doing on the bed? A. jumping. B. sleeping. C. eating."``). :func:`reference_query` builds it
the same way for every route (``quota ask``, ``quota eval``, the lmms-eval plug-in, the demo).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .choices import option_lines

# --------------------------------------------------------------------------------------------------------------
# Query decoupling (chain of thought)
# --------------------------------------------------------------------------------------------------------------

#: What follows the query in the decoupling prompt: the three-step instruction and three worked examples.
#: Source: MAC-AutoML/QuoTA, ``quota_pipeline.py``, the string ``retrieve_pmt_0`` (verbatim, indentation and the
#: example's spelling "ballons" included; it starts with a line break).
DECOUPLE_INSTRUCTION = '''\nTo answer this question, please follow the following step to give an object list for object detection.
    Step 1: Do you think it is necessary to detect specific physical entities in the video? Please only answer "yes" or "no" in this step.
    Step 2: If 'yes' in previous step, then what object in the video do you think needs to be detected to answer this question? Please only output the name of all the objects need to detect in the form of a Python list without other information.
    Step 3: Filter the object list provided in step 2, make sure they are physical entities, not abstract concepts. Please only output the name of the filtered object in the form of a Python list without other information. If all the words being filtered, please only output null.
    # Example 1:
    Question: How many blue balloons are over the long table in the middle of the room at the end of this video? A. 1. B. 2. C. 3. D. 4.
    Your output should be:
    Step 1: yes
    Step 2: ["blue ballons", "long table", "video", "blue"]
    Step 3: ["blue ballons", "long table"]
    # Example 2:
    Question: In the lower left corner of the video, what color is the woman wearing on the right side of the man in black clothes? A. Blue. B. White. C. Red. D. Yellow.
    Your output should be:
    Step 1: yes
    Step 2: ["the man in black", "woman", "lower left corner"]
    Step 3: ["the man in black", "woman"]
    # Example 3:
    Question: In which country is the comedy featured in the video recognized worldwide? A. China. B. UK. C. Germany. D. United States.
    Your output should be:
    Step 1: no'''

#: Most tokens the reference lets the decoupling step write (``quota_pipeline.py``, ``llava_inference`` without
#: video: ``max_new_tokens=4096``).
DECOUPLE_MAX_NEW_TOKENS = 4096


def reference_query(question: str, options: Sequence[str] | Mapping[str, str] | None = None) -> str:
    """The reference's "query": the question, then each option as ``"<letter>. <text>."`` on the same line.

    The reference's example query is ``"What's the man doing on the bed? A. jumping. B. sleeping. C. eating."``
    and its worked examples are written the same way. Options are lettered as everywhere in quota
    (:func:`quota.choices.option_lines`); an option that already ends in ``.``, ``?`` or ``!`` gets no second
    full stop. Runs of white space become one space. Without options the query is the question alone.
    """
    text = " ".join(str(question).split())
    parts = [text] + [line if line.endswith((".", "?", "!")) else line + "." for line in option_lines(options)]
    return " ".join(part for part in parts if part)


def decouple_prompt(query: str) -> str:
    """The reference's decoupling prompt for ``query`` (``quota_pipeline.py``: ``retrieve_pmt_0 = query``
    followed by :data:`DECOUPLE_INSTRUCTION`)."""
    return query + DECOUPLE_INSTRUCTION


# --------------------------------------------------------------------------------------------------------------
# Frame question (asked of the scoring model about every frame)
# --------------------------------------------------------------------------------------------------------------
# Source: MAC-AutoML/QuoTA, ``quota_pipeline.py``, ``process_video_prune``, the two branches that set
# ``query_relation``. The options are on the question's line and the yes option is "A".

#: The frame question with objects, before and after the objects joined by ``", "``.
FRAME_OBJECTS_HEAD = "Does the image contain any object of "
FRAME_OBJECTS_TAIL = "? A. yes, B. no\nAnswer with the option's letter directly."
#: The frame question without objects, after the query and a line break.
FRAME_NO_OBJECTS_TAIL = (
    "\nDoes the image contain sufficient information to answer the given question? A. yes, B. no\n"
    "Answer with the option's letter directly."
)


def frame_question(objects: Sequence[str] | None, query: str) -> str:
    """The reference's frame question: with objects (``len(objects) > 0``), whether the image contains any of
    them; otherwise ``query`` followed by whether the image suffices to answer it. Objects are used exactly as
    given (the reference's parser leaves them lower-cased; see :func:`quota.decouple.parse_reference_clue`)."""
    if objects:
        return FRAME_OBJECTS_HEAD + ", ".join(objects) + FRAME_OBJECTS_TAIL
    return f"{query}{FRAME_NO_OBJECTS_TAIL}"


# --------------------------------------------------------------------------------------------------------------
# Answer text of a multiple-choice question asked outside a benchmark harness (``quota ask``, the demo)
# --------------------------------------------------------------------------------------------------------------
# Source: MAC-AutoML/QuoTA, ``quota_pipeline.py``, the ``qs`` of the final ``llava_inference`` call (its letter list
# "(A, B, C, or D)" is fixed, whatever the number of options). Benchmark runs use each harness's own text instead
# (:mod:`quota.eval.prompts`).

ANSWER_HEAD = (
    "Select the best answer to the following multiple-choice question based on the video. Respond with only the "
    "letter (A, B, C, or D) of the correct option. Question: "
)
ANSWER_TAIL = "\nThe best answer is:"


def answer_question(query: str) -> str:
    """The reference's multiple-choice answer text around ``query`` (:func:`reference_query`)."""
    return ANSWER_HEAD + query + ANSWER_TAIL


# --------------------------------------------------------------------------------------------------------------
# Conversation of the LLaVA base model (decoupling, answer, baseline)
# --------------------------------------------------------------------------------------------------------------
# Source: LLaVA-VL/LLaVA-NeXT, ``llava/conversation.py``: ``conv_qwen`` (registered as ``conv_templates["qwen_1_5"]``,
# the template ``quota_pipeline.py`` and lmms-eval's ``llava_vid`` runs use), separator style CHATML: the system
# text, the separator and a line break, then each role, a line break, the message, the separator and a line
# break; the open assistant turn is the role and a line break.

#: Name of the reference's conversation template (recorded in plans).
QWEN_1_5 = "qwen_1_5"
_QWEN_1_5_SYSTEM = "<|im_start|>system\nYou are a helpful assistant."
_QWEN_1_5_ROLES = ("<|im_start|>user", "<|im_start|>assistant")
_QWEN_1_5_SEP = "<|im_end|>"


def qwen_1_5_prompt(message: str) -> str:
    """One user turn in the ``qwen_1_5`` conversation, with the assistant turn opened (``conv.get_prompt()``
    after ``append_message(user, message)`` and ``append_message(assistant, None)``)."""
    user, assistant = _QWEN_1_5_ROLES
    return (f"{_QWEN_1_5_SYSTEM}{_QWEN_1_5_SEP}\n"
            f"{user}\n{message}{_QWEN_1_5_SEP}\n"
            f"{assistant}\n")


def video_message(placeholder: str, text: str) -> str:
    """The user message of a LLaVA answer with video, as lmms-eval's ``llava_vid`` writes it (the paper's numbers
    come from that harness): the video placeholder, a line break, then ``text`` (the time sentence, a line break
    and the benchmark's question text)."""
    return f"{placeholder}\n{text}"


__all__ = [
    "DECOUPLE_INSTRUCTION", "DECOUPLE_MAX_NEW_TOKENS", "reference_query", "decouple_prompt", "FRAME_OBJECTS_HEAD",
    "FRAME_OBJECTS_TAIL", "FRAME_NO_OBJECTS_TAIL", "frame_question", "ANSWER_HEAD", "ANSWER_TAIL", "answer_question", "QWEN_1_5", "qwen_1_5_prompt", "video_message",
]
