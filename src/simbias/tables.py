"""CSV tables as HTML pages, for the Snakemake report (which can only offer a CSV as a download).

A wide table (a comparison has about 40 columns) does not fit a browser window: its columns are
shown in groups (outcome, sharpness, Theorem 3 …), one group at a time, chosen by tabs, with the
row's key (replica or regime) always on the left; "all columns" shows the whole table. The tabs
are radio buttons and CSS, no script. A missing number (NaN: the theory does not apply, a
replica diverged, a time was never reached) reads ``n/a``; an empty ``flag``, ``failed`` or
``not_applicable_reason`` reads ``none``.
"""

from __future__ import annotations

import html
import json
import numbers
import re

import numpy as np
import pandas as pd

from . import storage
from .sweeps import SWEEP_KEYS

# Column groups, in tab order: a column goes to the group whose pattern matches its whole name
# (the patterns exclude each other; comparison.csv, summary*.csv and the sweeps' tables share these
# stems); one that matches none goes to "other", so a new column is never hidden.
GROUPS: tuple[tuple[str, str], ...] = (
    (
        "outcome",
        r"replicas|(sgd_)?diverged|flow_status|flow_converged|reached_theorem2_point|flag(ged)?|failed|z_tol"
        r"|(median_)?z_dist_(sgd|flow)_end|(median_)?sharpness_gap|rank_(sgd|flow)|gap(_is_F|_floor)?",
    ),
    ("hand-over", r"(median_)?(handover_.*|flow_theta_travel|theta_displacement|sharpness_handover_.*)"),
    ("sharpness", r"(median_)?(sharpness_(?!gap$|handover_).*|grad_norm_end|loss_sgd_end)"),
    ("Theorem 3, Lemma 6", r"(median_)?(tau_.*|theorem3_(?!applicable$).*|lemma6_.*)"),
    ("structure", r"(feature_rank|cluster_count|step_arrival)_.*"),
    # brute_force.steps > 0: SGD run on past the hand-over, held against the flow's point
    ("SGD run on vs flow", r"((median|mean|se)_)?brute_(tau|z_.*|sharpness_.*|within_tol)"),
    ("SGD run on: loss, rank", r"((median|mean|se)_)?brute_(?!tau$|z_|sharpness_|within_tol$).*"),
    ("theory applies", r"theorem[23]_applicable|not_applicable_reason"),
)
OTHER = "other"
# the row's name, always shown (the first of these the table has, unless the same in every row),
# with a sweep table's axes after it
KEYS = ("replica", "regime")
# text columns whose empty cell means "nothing to report", not a missing value
EMPTY_MEANS_NONE = ("flag", "failed", "not_applicable_reason")
# shown once above the table when the same in every row (a comparison's regime and theory status)
HOISTED = ("regime", "theorem2_applicable", "theorem3_applicable", "not_applicable_reason")
# up to this many columns a table is shown whole, without tabs
PLAIN_MAX = 12
# a column with longer text wraps (in a column 24 em wide); shorter text stays on one line
LONG_TEXT = 30

STYLE = """<style>
body { font-family: sans-serif; font-size: 13px; margin: 1em; color: #222; }
h1 { font-size: 16px; margin: 0 0 4px 0; }
p { margin: 4px 0; }
p.legend, p.source { color: #555; }
input.tab { display: none; }
div.tabs { margin: 10px 0 0 0; display: flex; flex-wrap: wrap; gap: 2px; border-bottom: 1px solid #bbb; }
div.tabs label { padding: 4px 10px; border: 1px solid #bbb; border-bottom: none; background: #eee;
  border-radius: 4px 4px 0 0; cursor: pointer; }
div.scroll { overflow: auto; max-height: 85vh; margin-top: 6px; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; z-index: 2; vertical-align: bottom; white-space: normal; }
th.text, td.text { text-align: left; }
td.wrap { white-space: normal; min-width: 24em; }
th.key, td.key { position: sticky; left: 0; text-align: left; white-space: nowrap; background: #f6f6f6; z-index: 1; }
th.key { z-index: 3; }
td.na, td.none { color: #888; text-align: center; }
tr:nth-child(even) td { background: #fafafa; }
tr:nth-child(even) td.key { background: #f0f0f0; }
details { margin-top: 12px; } summary { cursor: pointer; font-weight: bold; }
pre { background: #f6f6f6; padding: 6px; border: 1px solid #ddd; }
</style>"""

NA_LEGEND = (
    "n/a: no value (the theory's assumptions fail for this row, the replica diverged, or the time "
    "was never reached; docs/outputs.md says which for each column)."
)


def group_of(column: str) -> str:
    """The tab a column is shown under (see GROUPS)."""
    return next((title for title, pattern in GROUPS if re.fullmatch(pattern, column)), OTHER)


def _is_missing(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _cell(column: str, value) -> tuple[str, str]:
    """(text, css class) of one cell: numbers to 6 significant digits, NaN ``n/a``."""
    if _is_missing(value):
        return ("none", "none") if column in EMPTY_MEANS_NONE else ("n/a", "na")
    if isinstance(value, bool | np.bool_):
        return str(bool(value)), ""
    if isinstance(value, numbers.Real):
        return format(value, ".6g"), ""
    if value in ("True", "False"):
        return value, ""
    return str(value), "text"


def _header(column: str) -> str:
    """A column name that may break after each underscore (narrow columns, full names)."""
    return html.escape(column).replace("_", "_<wbr>")


def _hoisted(df: pd.DataFrame) -> list[str]:
    if len(df) < 2:
        return []
    return [c for c in HOISTED if c in df and df[c].astype(str).nunique(dropna=False) == 1]


def _tab_css(n: int) -> str:
    """Show group i's columns while tab i is checked; the last tab shows every column."""
    rules = [".c { display: none; }"]
    for i in range(n):
        show = ".c" if i == n - 1 else f".c{i}"
        rules.append(
            f"#tab{i}:checked ~ .tabs label[for=tab{i}] {{ background: #fff; font-weight: bold; }}\n"
            f"#tab{i}:checked ~ .scroll {show} {{ display: table-cell; }}"
        )
    return "<style>\n" + "\n".join(rules) + "\n</style>"


def table_html(df: pd.DataFrame) -> str:
    """The table (and its tabs, when it has more than PLAIN_MAX columns) as HTML."""
    hoisted = _hoisted(df)
    key = next((c for c in KEYS if c in df and c not in hoisted), None)
    keys = ([key] if key else []) + [c for c in SWEEP_KEYS if c in df and c not in hoisted]
    shown = [c for c in df.columns if c not in hoisted and c not in keys]
    tabs = len(shown) > PLAIN_MAX
    groups = [t for t in [t for t, _ in GROUPS] + [OTHER] if any(group_of(c) == t for c in shown)]
    groups += ["all columns"] if tabs else []
    cells = {c: [_cell(c, v) for v in df[c]] for c in keys + shown}

    def column_classes(c: str) -> str:
        out = ["key"] if c == key else [f"c c{groups.index(group_of(c))}"] if tabs and c not in keys else []
        if c in EMPTY_MEANS_NONE or any(kind == "text" for _, kind in cells[c]):
            out.append("text")
        if any(len(text) > LONG_TEXT for text, _ in cells[c]):
            out.append("wrap")
        return " ".join(out)

    classes = {c: column_classes(c) for c in cells}

    def tag(name: str, classes: str, inner: str) -> str:
        return f'<{name} class="{classes}">{inner}</{name}>' if classes else f"<{name}>{inner}</{name}>"

    head = "".join(tag("th", classes[c], _header(c)) for c in cells)
    rows = [
        "<tr>"
        + "".join(
            tag("td", " ".join(x for x in (classes[c], cells[c][i][1]) if x), html.escape(cells[c][i][0]))
            for c in cells
        )
        + "</tr>"
        for i in range(len(df))
    ]
    out = []
    if hoisted:
        items = " · ".join(
            f"<b>{html.escape(c)}</b> {html.escape(_cell(c, df[c].iloc[0])[0])}" for c in hoisted
        )
        out.append(f'<p class="same">The same in every row: {items}</p>')
    if tabs:
        out.append(_tab_css(len(groups)))
        out += [
            f'<input type="radio" class="tab" name="tab" id="tab{i}"{" checked" * (i == 0)}>'
            for i in range(len(groups))
        ]
        labels = "".join(f'<label for="tab{i}">{html.escape(t)}</label>' for i, t in enumerate(groups))
        out.append(f'<div class="tabs">{labels}</div>')
    out.append(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )
    return "\n".join(out)


def comparison_title(regime: str) -> str:
    """The heading of a regime's comparison.html."""
    return f"{regime}: comparison with the theory, one row per replica"


def csv_to_html(csv: str, out: str, title: str, config: dict | None = None) -> None:
    """One HTML page holding the CSV's rows (every column, numbers to 6 significant digits), and,
    when given, the regime's resolved configuration."""
    df = pd.read_csv(csv, keep_default_na=True, dtype={c: str for c in EMPTY_MEANS_NONE})
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="source">{len(df)} rows, from <code>{html.escape(str(csv))}</code>.</p>',
    ]
    if df.drop(columns=[c for c in EMPTY_MEANS_NONE if c in df]).isna().to_numpy().any():
        parts.append(f'<p class="legend">{html.escape(NA_LEGEND)}</p>')
    parts.append(table_html(df))
    if config is not None:
        text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False)
        parts.append(
            "<details><summary>Resolved configuration of this regime</summary>"
            "<p>config.yaml's entry with the schema's defaults filled in; also the "
            "<code>config_json</code> attribute of every NetCDF file of the regime.</p>"
            f"<pre>{html.escape(text, quote=False)}</pre></details>"
        )
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{STYLE}'
        f"</head><body>\n{chr(10).join(parts)}\n</body></html>\n"
    )
    with storage.atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
