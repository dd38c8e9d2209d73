"""Reading a Python list of string literals from model text, without running anything.

The reference implementation reads the decoupling step's object list with Python's ``eval``. quota never
evaluates model output: :func:`read_string_list` is a small hand-written reader of exactly the part of Python's
grammar that makes a list of strings out of constants (a list display whose items are string literals), so it
returns what ``eval`` would return for such text, and ``None`` for everything else: text ``eval`` would reject,
text that would run code (names, calls, operators, comprehensions, f-strings), and lists holding anything but
strings (numbers, bytes, tuples, nested lists).

Grammar read (as Python reads it): ``[`` items separated by ``,`` with an optional trailing comma ``]``; an item
is one or more adjacent string literals (concatenated), optionally wrapped in parentheses; between tokens any of
space, tab, form feed and line breaks, ``#`` comments to the end of the line, and a backslash before a line break.
String literals take the prefixes ``r`` and ``u`` in either case (``b`` gives bytes and ``f`` would format:
both make the list unusable), single, double and triple quotes, and Python's escapes (``\\n``, ``\\x41``,
``\\u00e9``, ``\\N{...}``, octal, a backslash before a line break). A lone surrogate (``\\ud800``) is refused:
no tokenizer can encode it. Every loop advances through the text once, so the cost is linear in its length.
"""

from __future__ import annotations

import unicodedata

_SPACE = " \t\f\r\n"
_SIMPLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                   "t": "\t", "v": "\v"}
_HEX = "0123456789abcdefABCDEF"
_UNICODE_DIGITS = {"x": 2, "u": 4, "U": 8}
#: Parentheses around an item that make Python's tokenizer give up (its nesting limit, MAXLEVEL, is 200 open
#: brackets, the list's own included).
_MAX_NESTING = 200


class _Reject(Exception):
    """The text is not a list of string literals."""


def read_string_list(text: str) -> list[str] | None:
    """The strings of a Python list display of string literals, or ``None`` when ``text`` is anything else.

    ``read_string_list('["man", \\'box\\']') == ["man", "box"]``; ``read_string_list("[]") == []``;
    ``read_string_list("[man]")``, ``read_string_list('["a" + "b"]')`` and ``read_string_list("[1]")`` are
    ``None``. Surrounding white space is allowed; anything else around the list is not.
    """
    if not isinstance(text, str):
        return None
    try:
        reader = _Reader(text)
        reader.skip()
        items = reader.list_display()
        reader.skip()
        if reader.pos != len(text):
            raise _Reject("text after the list")
    except _Reject:
        return None
    return items


class _Reader:
    """A cursor over the text; each method reads one grammar rule or raises :class:`_Reject`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self) -> None:
        """White space, comments and backslash line joins between tokens (inside brackets)."""
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in _SPACE:
                self.pos += 1
            elif c == "#":
                while self.pos < n and text[self.pos] not in "\r\n":
                    self.pos += 1
            elif c == "\\" and text.startswith(("\n", "\r"), self.pos + 1):
                self.pos += 2
            else:
                return

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _Reject(f"expected {char!r}")
        self.pos += 1

    def list_display(self) -> list[str]:
        self.expect("[")
        items: list[str] = []
        while True:
            self.skip()
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.item())
            self.skip()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise _Reject("items must be separated by commas")

    def item(self) -> str:
        """A string expression: adjacent literals, possibly wrapped in parentheses (a tuple is not a string).
        Like Python's tokenizer, it refuses :data:`_MAX_NESTING` parentheses and more."""
        depth = 0
        while self.peek() == "(":
            depth += 1
            if depth >= _MAX_NESTING:
                raise _Reject("too many nested parentheses")
            self.pos += 1
            self.skip()
        parts = [self.literal()]
        while True:
            self.skip()
            if not self._starts_literal():
                break
            parts.append(self.literal())
        for _ in range(depth):
            self.skip()
            self.expect(")")  # "," here would make a tuple
        return "".join(parts)

    def _starts_literal(self) -> bool:
        text, i = self.text, self.pos
        while i < len(text) and i - self.pos < 2 and text[i].isalpha():
            i += 1
        return i < len(text) and text[i] in "'\""

    def literal(self) -> str:
        """One string literal with its prefix; bytes and f-strings are refused."""
        start = self.pos
        while self.peek().isalpha() and self.pos - start < 2:
            self.pos += 1
        prefix = self.text[start:self.pos].lower()
        if prefix not in ("", "r", "u"):
            raise _Reject(f"prefix {prefix!r}: bytes, f-strings and unknown prefixes are not plain strings")
        quote = self.peek()
        if quote not in "'\"":
            raise _Reject("expected a string literal")
        triple = self.text.startswith(quote * 3, self.pos)
        closer = quote * 3 if triple else quote
        self.pos += len(closer)
        return self._body(closer, raw=prefix == "r", triple=triple)

    def _body(self, closer: str, raw: bool, triple: bool) -> str:
        text, n = self.text, len(self.text)
        out: list[str] = []
        while True:
            if self.pos >= n:
                raise _Reject("string not closed")
            if text.startswith(closer, self.pos):
                self.pos += len(closer)
                return "".join(out)
            c = text[self.pos]
            if c in "\r\n" and not triple:
                raise _Reject("line break inside a one-line string")
            if c != "\\":
                out.append(c)
                self.pos += 1
                continue
            if self.pos + 1 >= n:
                raise _Reject("string not closed")
            nxt = text[self.pos + 1]
            if raw:  # a backslash keeps the next character (even a quote) and itself
                out.append(c + nxt)
                self.pos += 2
                continue
            out.append(self._escape(nxt))

    def _escape(self, c: str) -> str:
        """The value of the escape ``\\c...`` at the cursor (which sits on the backslash)."""
        text = self.text
        self.pos += 2
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c == "\n":
            return ""
        if c == "\r":
            if self.peek() == "\n":
                self.pos += 1
            return ""
        if c in "01234567":
            end = self.pos
            while end < len(text) and end - self.pos < 2 and text[end] in "01234567":
                end += 1
            value = int(text[self.pos - 1:end], 8)
            self.pos = end
            return self._char(value)
        if c in _UNICODE_DIGITS:
            width = _UNICODE_DIGITS[c]
            digits = text[self.pos:self.pos + width]
            if len(digits) != width or any(d not in _HEX for d in digits):
                raise _Reject(f"truncated \\{c} escape")
            self.pos += width
            return self._char(int(digits, 16))
        if c == "N":
            end = text.find("}", self.pos)
            if self.peek() != "{" or end == -1:
                raise _Reject("malformed \\N{...} escape")
            try:
                value = unicodedata.lookup(text[self.pos + 1:end])
            except KeyError:
                raise _Reject("unknown character name") from None
            self.pos = end + 1
            return value
        return "\\" + c  # an unknown escape keeps its backslash, as Python does

    @staticmethod
    def _char(code: int) -> str:
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _Reject("not a character a tokenizer can encode")
        return chr(code)


__all__ = ["read_string_list"]
