"""Scrubbing secret values out of text and log records.

A :class:`Redactor` holds the secret values a process has seen. ``redact(text)``
replaces, with ``***``:

- every registered value;
- its percent-encoded forms (``quote`` and ``quote_plus``, upper or lower case hex);
- its standard and URL-safe base64 forms, both on their own and embedded in a longer
  base64 string (the three alignments, so a password inside an HTTP Basic header is
  caught);
- any prefix of 6 or more characters of any of those, so a secret cut short in an
  error message does not leak either.

Values shorter than 4 characters are not registered (and derived forms shorter than
6 are skipped): replacing them would mangle ordinary text, and they are not secrets
worth the name. A consequence of the prefix rule: text that happens to share its
first 6+ characters with a secret is redacted too; with random secrets that does
not happen in practice.

Matching is a compiled regular expression over the 6-character heads of every
form, built as a trie so a search costs about the same with ten secrets or ten
thousand; each hit is then extended to the longest matching prefix. It is rebuilt
lazily, on the first ``redact`` after a registration (see :class:`Redactor` for
how that stays cheap when secrets arrive one at a time).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr

__all__ = ["RedactingFilter", "Redactor", "install_log_redaction", "redact", "redactor"]

PLACEHOLDER = "***"
MIN_LENGTH = 4
MIN_PREFIX = 6


def _base64_forms(value: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(value).decode("ascii")
        forms.add(full)
        forms.add(full.rstrip("="))
        for shift in (1, 2):
            # The characters that depend only on the value's bytes when it sits at
            # offset `shift` (mod 3) inside a longer encoded string.
            encoded = encode(b"\0" * shift + value).decode("ascii").rstrip("=")
            start = -(-8 * shift // 6)
            end = (8 * (shift + len(value))) // 6
            forms.add(encoded[start:end])
        end = (8 * len(value)) // 6
        forms.add(full[:end])
    return forms


def _forms(value: str) -> set[str]:
    forms = {value}
    derived: set[str] = set()
    for quoted in (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)):
        derived.add(quoted)
        derived.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted))
    derived |= _base64_forms(value.encode("utf-8"))
    forms |= {form for form in derived if len(form) >= MIN_PREFIX}
    return forms


def _trie_pattern(words: Iterable[str]) -> str:
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = True

    def build(node: dict[str, Any]) -> str:
        ends_here = "" in node
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends_here:
            return ("(?:" + body + ")?") if len(branches) == 1 else body + "?"
        return body

    return build(trie)


class _Generation:
    """One compiled matcher over a fixed set of values."""

    __slots__ = ("by_head", "pattern")

    def __init__(self, forms: Iterable[str]) -> None:
        grouped: dict[str, set[str]] = {}
        for form in forms:
            grouped.setdefault(form[:MIN_PREFIX], set()).add(form)
        self.by_head = {
            head: tuple(sorted(group, key=len, reverse=True)) for head, group in grouped.items()
        }
        self.pattern = re.compile(_trie_pattern(self.by_head))


class Redactor:
    """A thread-safe registry of secret values, and the function that scrubs them from text.

    ``register`` is cheap; matchers are rebuilt on the next ``redact``. Values
    registered since the last full rebuild live in a small second matcher, so a
    process that registers secrets one at a time between log lines does not
    recompile everything each time; the two are merged once the second grows past
    an eighth of the first. The process-wide instance :data:`redactor` is the one
    the vault and :class:`RedactingFilter` use by default.
    """

    def __init__(self, *, placeholder: str = PLACEHOLDER) -> None:
        self.placeholder = placeholder
        self._lock = threading.Lock()
        self._forms: dict[str, frozenset[str]] = {}
        self._settled: list[str] = []
        self._recent: list[str] = []
        self._settled_generation: _Generation | None = None
        self._generations: tuple[_Generation, ...] | None = ()

    def __len__(self) -> int:
        """How many values are registered."""
        return len(self._forms)

    def __repr__(self) -> str:
        return f"Redactor({len(self._forms)} values)"

    def register(self, *values: str | SecretStr | None) -> None:
        """Add secret values. ``None``, values already known and values shorter than 4
        characters are ignored (see the module documentation)."""
        plain = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in values]
        fresh = [
            v for v in plain if isinstance(v, str) and len(v) >= MIN_LENGTH and v not in self._forms
        ]
        if not fresh:
            return
        computed = {value: frozenset(_forms(value)) for value in fresh}
        with self._lock:
            for value, forms in computed.items():
                if value not in self._forms:
                    self._forms[value] = forms
                    self._recent.append(value)
            self._generations = None

    def clear(self) -> None:
        """Forget every registered value."""
        with self._lock:
            self._forms.clear()
            self._settled.clear()
            self._recent.clear()
            self._settled_generation = None
            self._generations = ()

    def _matchers(self) -> tuple[_Generation, ...]:
        generations = self._generations
        if generations is not None:
            return generations
        with self._lock:
            if self._generations is None:
                if len(self._recent) > max(16, len(self._settled) // 8):
                    self._settled.extend(self._recent)
                    self._recent.clear()
                    self._settled_generation = _Generation(
                        f for v in self._settled for f in self._forms[v]
                    )
                built = [] if self._settled_generation is None else [self._settled_generation]
                if self._recent:
                    built.append(_Generation(f for v in self._recent for f in self._forms[v]))
                self._generations = tuple(built)
            return self._generations

    def redact(self, text: str) -> str:
        """``text`` with every registered secret, its encodings and its 6+ character
        prefixes replaced by the placeholder."""
        generations = self._matchers()
        if not generations or not text:
            return text
        out: list[str] = []
        last = 0
        while True:
            found = self._next(generations, text, last)
            if found is None:
                break
            start, length = found
            out.append(text[last:start])
            out.append(self.placeholder)
            last = start + length
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)

    @staticmethod
    def _next(generations: tuple[_Generation, ...], text: str, pos: int) -> tuple[int, int] | None:
        """The earliest (then longest) hit at or after ``pos``: its start and length."""
        best: tuple[int, int] | None = None
        for generation in generations:
            match = generation.pattern.search(text, pos)
            if match is None or (best is not None and match.start() > best[0]):
                continue
            start, head = match.start(), match.group()
            length = len(head)
            if length >= MIN_PREFIX:
                for other in generations:
                    length = max(length, _extend(text, start, length, other.by_head.get(head, ())))
            if best is None or start < best[0] or length > best[1]:
                best = (start, length)
        return best


def _extend(text: str, start: int, length: int, forms: tuple[str, ...]) -> int:
    """How far a hit at ``start`` reaches: the longest prefix of any of ``forms``
    (longest first) that ``text`` holds there, at least ``length``."""
    size = len(text)
    for form in forms:
        if length >= len(form):
            break
        if text.startswith(form, start):
            return len(form)
        k = length
        limit = min(len(form), size - start)
        while k < limit and text[start + k] == form[k]:
            k += 1
        length = max(length, k)
    return length


redactor = Redactor()
"""The process-wide :class:`Redactor`: every secret a vault returns is registered here."""


_DEFAULT_REDACTOR = redactor


def redact(text: str) -> str:
    """``text`` scrubbed by the process-wide :data:`redactor`."""
    return redactor.redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from each record before it is emitted.

    It formats the message with its arguments, redacts the result and clears the
    arguments; it also redacts the formatted exception and stack. It never drops a
    record. Attach it to handlers (it then covers records propagated from child
    loggers) or use :func:`install_log_redaction`.
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor if redactor is not None else _DEFAULT_REDACTOR

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:
            message = " ".join([str(record.msg), *(str(arg) for arg in _args(record.args))])
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _args(args: object) -> Iterable[object]:
    if args is None:
        return ()
    if isinstance(args, tuple):
        return args
    return (args,)


def install_log_redaction(
    logger: logging.Logger | str | None = None, *, redactor: Redactor | None = None
) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to ``logger`` (default: the root logger) and to
    each of its handlers, so records propagated from child loggers are scrubbed too.

    Idempotent: a logger or handler that already has a ``RedactingFilter`` is left
    alone. Handlers added later need ``handler.addFilter(...)`` with the returned filter.
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    installed = RedactingFilter(redactor)
    for holder in (target, *target.handlers):
        if not any(isinstance(f, RedactingFilter) for f in holder.filters):
            holder.addFilter(installed)
    return installed
