"""Tables that fit the terminal they are printed on (or $COLUMNS when captured).

On a narrow terminal (ssh from a laptop into an 80-column console) a table squeezed by
Rich cuts every column to a few characters, and the cause of a failure — the column
people read a queue for — ends as "http://…". Instead:

1. a table that fits is printed as it is;
2. free-text columns (a cause, an error, a path: `long`) may wrap inside the table while
   they keep at least LONG_MIN characters; every other cell stays on one line, whole;
3. otherwise the low-value columns (`drop`, lowest first) are left out one by one;
4. if even then it does not fit, each row becomes a block: its short cells on one line,
   each free text on its own lines below, indented and wrapped whole ("why: ..."). A row
   whose first cell is empty continues the row above (a player's further test steps):
   its first line is indented under that one's.

Rich is imported only when a grid is printed through Rich; `plain()` gives the same
choices as text lines for output that must not load it (`status` through a pipe).
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions

#: The narrowest a free-text column may wrap to inside a table: below it, blocks read
#: better than a column of three-word lines.
LONG_MIN = 40
#: Indent of a block's free-text lines, under its first line.
INDENT = "    "


def width_of(text: str) -> int:
    """Terminal cells `text` takes: wide (CJK) characters two, combining marks none."""
    cells = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        cells += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return cells


@dataclass(frozen=True)
class Column:
    name: str
    right: bool = False
    #: Left out on a narrow terminal when > 0, the lowest first; 0: always shown.
    drop: int = 0
    #: Free text (a cause, an error, a path): may wrap; in a block, on its own lines.
    long: bool = False
    #: In a block, shown as "name value": a bare number would say nothing there.
    label: bool = False


Cell = tuple[str, str]  # text, Rich style


@dataclass
class Grid:
    """A table's title, columns and rows of (text, style) cells, laid out at print time
    for the width there is."""

    title: str
    columns: list[Column] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)

    def add_column(self, name: str, justify: str = "left", *, drop: int = 0,
                   long: bool = False, label: bool = False) -> None:
        self.columns.append(Column(name, justify == "right", drop, long, label))

    def add_row(self, *cells: Any) -> None:
        """Cells as text, (text, style) pairs, or Rich Text (its plain text and style)."""
        row: list[Cell] = []
        for cell in cells:
            if isinstance(cell, tuple):
                row.append((str(cell[0]), str(cell[1] or "")))
            elif hasattr(cell, "plain"):
                row.append((cell.plain, str(cell.style or "")))
            else:
                row.append(("" if cell is None else str(cell), ""))
        self.rows.append(row)

    # --- the layout -----------------------------------------------------------------

    def _natural(self) -> list[int]:
        return [max([width_of(c.name)] + [width_of(r[i][0]) for r in self.rows])
                for i, c in enumerate(self.columns)]

    def layout(self, width: int, *, boxed: bool = True) -> tuple[bool, list[int]]:
        """(as a table?, the columns shown) for `width` cells. Boxed is Rich's table (a
        border and a space each side of every cell); otherwise columns two spaces
        apart, which cannot wrap inside."""
        natural = self._natural()
        kept = list(range(len(self.columns)))
        droppable = sorted((c.drop, i) for i, c in enumerate(self.columns) if c.drop > 0)
        while True:
            if boxed:
                need = sum(min(natural[i], LONG_MIN) if self.columns[i].long else natural[i]
                           for i in kept) + 3 * len(kept) + 1
            else:
                need = sum(natural[i] for i in kept) + 2 * (len(kept) - 1)
            if need <= width:
                return True, kept
            if not droppable:
                break
            kept.remove(droppable.pop(0)[1])
        return False, kept

    def blocks(self, kept: list[int]) -> Iterator[tuple[str, list[Cell], list[str]]]:
        """Per row: its indent, the short cells of its first line, then its free texts."""
        for row in self.rows:
            head: list[Cell] = []
            texts: list[str] = []
            indent = "  " if kept and not row[kept[0]][0] else ""
            for i in kept:
                column, (text, style) = self.columns[i], row[i]
                if not text:
                    continue
                if column.long:
                    texts.append(f"{column.name}: {text}")
                else:
                    head.append((f"{column.name} {text}" if column.label else text, style))
            yield indent, head, texts

    def plain(self, width: int) -> list[str]:
        """The title, then columns two spaces apart, or blocks: never wider than
        `width` (but for a single word longer than that, which is cut into lines)."""
        as_table, kept = self.layout(width, boxed=False)
        out = [self.title]
        if as_table:
            natural = self._natural()
            grid = [[self.columns[i].name for i in kept]] + [
                [row[i][0] for i in kept] for row in self.rows]
            for line in grid:
                cells = []
                for text, i in zip(line, kept, strict=True):
                    pad = " " * (natural[i] - width_of(text))
                    cells.append(pad + text if self.columns[i].right else text + pad)
                out.append("  ".join(cells).rstrip())
            return out
        for indent, head, texts in self.blocks(kept):
            out += _wrap("  ".join(text for text, _ in head), width, indent, indent + "  ")
            for text in texts:
                out += _wrap(text, width, INDENT, INDENT)
        return out

    # --- Rich -------------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        from rich.padding import Padding
        from rich.table import Table
        from rich.text import Text

        as_table, kept = self.layout(options.max_width)
        if as_table:
            table = Table(title=self.title, title_justify="left")
            for i in kept:
                column = self.columns[i]
                # Only free text wraps: names, items and numbers stay whole on one line.
                # A word wider than its column (a URL, a path) is folded, never cut to
                # "…": the cause is what people read.
                table.add_column(column.name, justify="right" if column.right else "left",
                                 no_wrap=not column.long,
                                 overflow="fold" if column.long else "ellipsis")
            for row in self.rows:
                table.add_row(*(Text(row[i][0], style=row[i][1]) for i in kept))
            yield table
            return
        yield Text(self.title, style="table.title")
        for indent, head, texts in self.blocks(kept):
            line = Text()
            for index, (text, style) in enumerate(head):
                if index:
                    line.append("  ")
                line.append(text, style=style)
            yield Padding(line, (0, 0, 0, len(indent)), expand=False) if indent else line
            for text in texts:  # as plain() does: the same lines, never padded
                for wrapped in _wrap(text, options.max_width, INDENT, INDENT):
                    yield Text(wrapped)


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, max(width, len(rest) + 10), initial_indent=first,
                         subsequent_indent=rest, break_on_hyphens=False) or [first.rstrip()]
