"""CSV tables as HTML tables, for the Snakemake report (which can only offer a CSV as a download)."""

from __future__ import annotations

import html

import pandas as pd

from . import storage

STYLE = """<style>
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.text { text-align: left; white-space: normal; }
tr:nth-child(even) td { background: #fafafa; }
</style>"""


def _cell(value) -> tuple[str, bool]:
    """A value as text (numbers to 6 significant digits, NaN empty) and whether it is text."""
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, int | float):
        return ("" if pd.isna(value) else format(value, ".6g")), False
    return ("" if pd.isna(value) else str(value)), True


def csv_to_html(csv: str, out: str, title: str) -> None:
    """One HTML page holding the CSV's rows (every column, numbers to 6 significant digits)."""
    df = pd.read_csv(csv, keep_default_na=True)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for value in rec:
            text, is_text = _cell(value)
            cls = ' class="text"' if is_text else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{STYLE}'
        f"</head><body><p>{html.escape(title)} ({len(df)} rows; from <code>{html.escape(str(csv))}</code>)</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )
    with storage.atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
