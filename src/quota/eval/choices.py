"""Multiple-choice helpers, kept here for ``quota.eval`` users; they live in :mod:`quota.choices`."""

from __future__ import annotations

from ..choices import LETTERS, extract_choice, format_options, option_letters, option_lines, strip_option_prefix

__all__ = ["LETTERS", "extract_choice", "format_options", "option_letters", "option_lines", "strip_option_prefix"]
