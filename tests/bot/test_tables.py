"""Markdown (and HTML) tables in an answer become CSV files a spreadsheet opens correctly."""

from __future__ import annotations

import csv
import io

from bot.tables import find_tables, table_to_csv

ANSWER = """Here is the table from the invoice:

| Item | Qty | Price |
|:-----|----:|:-----:|
| **Toner** CF259A | 2 | 89.90 |
| Paper A4, 80 g | 10 | 4.50 |
| Cable a\\|b | | -3.00 |

Totals are not included.
"""


def rows_of(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark for spreadsheet apps
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_markdown_table_to_csv() -> None:
    [table] = find_tables(ANSWER)
    assert table == [
        ["Item", "Qty", "Price"],
        ["**Toner** CF259A", "2", "89.90"],
        ["Paper A4, 80 g", "10", "4.50"],
        ["Cable a|b", "", "-3.00"],
    ]
    assert rows_of(table_to_csv(table)) == table  # commas, empty cells and negative numbers survive


def test_several_tables_without_outer_pipes_and_ragged_rows() -> None:
    text = "Table 1\n\nA | B\n--|--\n1 | 2\n3\n\nTable 2\n\n| X |\n|---|\n| **bold** |\n| y | extra |\n"
    first, second = find_tables(text)
    assert first == [["A", "B"], ["1", "2"]]
    assert second == [["X"], ["bold"], ["y"]]


def test_formula_like_cells_are_defused() -> None:
    table = [["a", "b", "c", "d"], ["=HYPERLINK(\"x\")", "@SUM(A1)", "+1 555 0100 call", "+12.5%"]]
    assert rows_of(table_to_csv(table))[1] == ["'=HYPERLINK(\"x\")", "'@SUM(A1)", "'+1 555 0100 call", "+12.5%"]


def test_html_table_when_there_is_no_markdown() -> None:
    text = (
        "<table><thead><tr><th>Name</th><th colspan='2'>Range</th></tr></thead>"
        "<tbody><tr><td>Temp &amp; humidity</td><td>10</td><td>40<br>max</td></tr></tbody></table>"
    )
    assert find_tables(text) == [[["Name", "Range", ""], ["Temp & humidity", "10", "40\nmax"]]]


def test_no_table() -> None:
    assert find_tables("The picture shows a printer with no table in it. | a pipe alone") == []
    assert find_tables("| a | b |\n| c | d |") == []  # no separator row: not a table
