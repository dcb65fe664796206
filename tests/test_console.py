"""Terminal output that stays readable where it is not a terminal (a pipe, a CI log)."""

import io

from rich.table import Table

from edgekd.console import PIPED_WIDTH, make_console


def test_a_piped_console_does_not_cut_a_wide_table(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    console = make_console(file=out)
    assert console.width == PIPED_WIDTH
    table = Table()
    for column in ("artifact", "status", "MB", "max|diff|", "agree", "acc / ppl", "time s"):
        table.add_column(column)
    table.add_row("student-openvino-int8-dynamic", "ok", "396.64", "0.0012", "100%", "0.9876", "4.9")
    console.print(table)
    assert "student-openvino-int8-dynamic" in out.getvalue() and "…" not in out.getvalue()
    monkeypatch.setenv("COLUMNS", "100")   # the user's own setting wins
    assert make_console(file=io.StringIO()).width == 100
