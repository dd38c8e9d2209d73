"""Multiple-choice helpers: letter the options, and read the chosen letter out of an answer."""

from __future__ import annotations

from .eval.choices import extract_choice, format_options, option_letters, strip_option_prefix

__all__ = ["extract_choice", "format_options", "option_letters", "strip_option_prefix"]
