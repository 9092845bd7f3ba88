"""Tables in a model answer (Markdown pipe tables, or HTML tables as a fallback) turned into CSV files."""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser

__all__ = ["Table", "find_tables", "table_to_csv"]

Table = list[list[str]]

_SEPARATOR_CELL = re.compile(r"^:?-{1,}:?$")
_EMPHASIS = re.compile(r"^(\*\*|__)(.*)\1$")
_NUMBER = re.compile(r"^[-+]?[\d.,\s]*\d[\d.,\s]*%?$")


def _split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; a backslash-escaped pipe stays inside its cell."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells = re.split(r"(?<!\\)\|", body)
    return [_clean(cell) for cell in cells]


def _clean(cell: str) -> str:
    cell = cell.strip().replace("\\|", "|")
    cell = re.sub(r"<br\s*/?>", "\n", cell, flags=re.IGNORECASE)
    match = _EMPHASIS.match(cell)
    return match.group(2).strip() if match else cell


def _is_separator(line: str) -> bool:
    cells = _split_row(line)
    return bool(cells) and "|" in line and all(_SEPARATOR_CELL.match(c.replace(" ", "")) for c in cells)


def _markdown_tables(text: str) -> list[Table]:
    lines = text.splitlines()
    tables: list[Table] = []
    i = 0
    while i < len(lines) - 1:
        if "|" in lines[i] and _is_separator(lines[i + 1]):
            header = _split_row(lines[i])
            rows = [header]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                row = _split_row(lines[i])
                # Pad or trim to the header's width, as renderers of GitHub tables do.
                rows.append((row + [""] * len(header))[: len(header)])
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


class _HtmlTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[Table] = []
        self._depth = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._span = 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append([])
        elif self._depth == 1 and tag == "tr":
            self._row = []
        elif self._depth == 1 and tag in ("td", "th") and self._row is not None:
            self._cell = []
            colspan = dict(attrs).get("colspan") or "1"
            self._span = int(colspan) if colspan.isdigit() else 1
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._depth = max(0, self._depth - 1)
        elif self._depth == 1 and tag in ("td", "th") and self._cell is not None and self._row is not None:
            text = "\n".join(" ".join(part.split()) for part in "".join(self._cell).split("\n")).strip()
            self._row.extend([text] + [""] * (min(self._span, 50) - 1))
            self._cell = None
        elif self._depth == 1 and tag == "tr" and self._row is not None:
            if self._row:
                self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def find_tables(text: str) -> list[Table]:
    """Every Markdown table in `text`; HTML <table>s only when there is no Markdown table."""
    tables = _markdown_tables(text)
    if tables or "<table" not in text.lower():
        return tables
    parser = _HtmlTables()
    parser.feed(text)
    parser.close()
    return [table for table in parser.tables if table]


def _safe(cell: str) -> str:
    """Keep spreadsheet apps from running a cell as a formula (CSV injection); numbers stay numbers."""
    if cell[:1] in ("=", "@", "\t", "\r") or (cell[:1] in ("+", "-") and not _NUMBER.match(cell)):
        return "'" + cell
    return cell


def table_to_csv(table: Table) -> bytes:
    """UTF-8 with a byte-order mark, so spreadsheet apps detect the encoding of non-English text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in table:
        writer.writerow([_safe(cell) for cell in row])
    return buffer.getvalue().encode("utf-8-sig")
