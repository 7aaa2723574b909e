"""The benchmark reports' Markdown tables: a header, its alignment rule, and one line per row."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]], left: Collection[int] = (0,)) -> str:
    """Columns are right-aligned (figures) except those in `left` (labels)."""
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(cell) for cell in cells) + " |"

    rule = "|" + "".join("---|" if index in left else "---:|" for index in range(len(header)))
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
