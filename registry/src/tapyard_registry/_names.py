r"""Names a publisher may not take: confusables of names another publisher holds.

Three checks, each against every package another publisher owns:

- the PEP 503 normal forms are equal (``Acme_CRM`` is ``acme-crm``);
- the visual skeletons are equal: Unicode confusables (Cyrillic ``\u0430`` for
  Latin ``a``, from Unicode's confusables table as the ``confusable_homoglyphs``
  package ships it) and ASCII look-alikes (``rn``/``m``, ``0``/``o``,
  ``1``/``l``), separators ignored;
- the Damerau-Levenshtein distance (optimal string alignment) between the
  names' stems (the part after a ``tapyard-`` prefix) is at most 1 for a stem
  of up to 6 characters and at most 2 for a longer one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["confusable_with", "damerau_levenshtein", "skeleton"]

_ASCII_LOOKALIKES = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("0", "o"), ("1", "l"), ("|", "l"))


@lru_cache(maxsize=1)
def _homoglyphs() -> dict[str, str]:
    """Each non-ASCII character that Unicode lists as confusable with an ASCII one, mapped to it."""
    from confusable_homoglyphs import confusables

    table: dict[str, str] = {}
    data = confusables.confusables_data if hasattr(confusables, "confusables_data") else confusables.load("confusables")
    for char, entries in data.items():
        if char.isascii():
            for entry in entries:
                glyph = entry.get("c", "")
                if len(glyph) == 1 and not glyph.isascii():
                    table.setdefault(glyph, char.lower())
    return table


def skeleton(name: str) -> str:
    """What ``name`` looks like: confusable characters folded to one ASCII form, separators dropped."""
    text = unicodedata.normalize("NFKC", name).lower()
    glyphs = _homoglyphs()
    text = "".join(glyphs.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    for seen, meant in _ASCII_LOOKALIKES:
        text = text.replace(seen, meant)
    return re.sub(r"[-_.\s]+", "", text)


def damerau_levenshtein(a: str, b: str) -> int:
    """The optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _stem(normal: str) -> str:
    return normal.removeprefix("tapyard-")


def confusable_with(name: str, others: Iterable[str]) -> str | None:
    """The first of ``others`` that ``name`` could be mistaken for, or None."""
    normal = re.sub(r"[-_.]+", "-", name).lower()
    shape = skeleton(name)
    stem = _stem(normal)
    limit = 1 if len(stem) <= 6 else 2
    for other in others:
        other_normal = re.sub(r"[-_.]+", "-", other).lower()
        if other_normal == normal or skeleton(other) == shape:
            return other
        other_stem = _stem(other_normal)
        if abs(len(other_stem) - len(stem)) <= limit and damerau_levenshtein(stem, other_stem) <= limit:
            return other
    return None
