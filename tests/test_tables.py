"""The report's HTML tables (simbias.tables): tabs of grouped columns, n/a as text, escaping."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from test_outputs_doc import _dims, doc_tables

from simbias import tables


def _page(tmp_path, df: pd.DataFrame, config=None) -> str:
    csv, out = tmp_path / "t.csv", tmp_path / "t.html"
    df.to_csv(csv, index=False)
    tables.csv_to_html(str(csv), str(out), "title", config)
    return out.read_text().replace("<wbr>", "")


def _documented_columns() -> dict[str, list[str]]:
    """Every column docs/outputs.md lists for comparison.csv, summary.csv and a sweep's table."""
    t = doc_tables()
    comparison = [
        k for k, c in t["`comparison.nc` and `comparison.csv`"].items() if _dims(c[1]) == ("replica",)
    ]
    brute = next(v for k, v in t.items() if k.startswith("Brute-force columns"))
    summary_brute = ["brute_tau", "brute_within_tol", "median_brute_z_gap", "mean_brute_sharpness_diff"]
    return {
        "comparison": ["regime", *comparison, *brute],
        "summary": [*t["`summary.csv`"], *summary_brute],
        "sweep": [k for k in t["`sweeps/{base}.csv`"] if "`" not in k] + ["eta", "sigma"],
    }


def test_every_documented_column_has_its_tab_and_a_tab_fits_a_window():
    for name, columns in _documented_columns().items():
        groups: dict[str, list[str]] = {}
        for c in columns:
            if c not in tables.KEYS and c not in tables.SWEEP_KEYS:
                groups.setdefault(tables.group_of(c), []).append(c)
        assert tables.OTHER not in groups, (name, groups.get(tables.OTHER))
        # about 90 px a column with the names broken at their underscores: 12 fit 1400 px beside
        # the report's menu
        assert max(len(g) for g in groups.values()) <= tables.PLAIN_MAX, (name, groups)


def test_patterns_exclude_each_other():
    for columns in _documented_columns().values():
        for c in columns:
            hits = [t for t, p in tables.GROUPS if re.fullmatch(p, c)]
            assert len(hits) <= 1, (c, hits)


def test_missing_values_read_n_a_and_empty_text_none(tmp_path):
    df = pd.DataFrame(
        {
            "regime": ["r", "r"],
            "replica": [0, 1],
            "z_dist_flow_end": [1.5e-12, np.nan],
            "reached_theorem2_point": [True, None],
            "flag": ["", "flow stalled"],
            "not_applicable_reason": ["", ""],
        }
    )
    page = _page(tmp_path, df)
    body = page.split("<table>", 1)[1]
    assert "<td></td>" not in body and re.search(r"<td[^>]*>\s*</td>", body) is None  # no blank cell
    assert body.count(">n/a</td>") == 2 and ">1.5e-12</td>" in body and ">True</td>" in body
    assert ">none</td>" in body and ">flow stalled</td>" in body
    assert "n/a: no value" in page
    # the same regime and reason in every row: said once, above the table
    head = page.split("<table>", 1)[0]
    assert "<b>regime</b> r" in head and "<b>not_applicable_reason</b> none" in head
    assert "<th>regime" not in body and '<th class="key">replica</th>' in body


def test_wide_table_comes_in_tabs_with_every_column_in_the_last(tmp_path):
    columns = _documented_columns()["comparison"]
    df = pd.DataFrame([{c: 1.0 for c in columns}, {c: 2.0 for c in columns}]).assign(regime=["a", "b"])
    page = _page(tmp_path, df)
    labels = re.findall(r'<label for="tab(\d+)">([^<]*)</label>', page)
    assert [t for _, t in labels][0] == "outcome" and labels[-1][1] == "all columns"
    assert page.count('type="radio"') == len(labels) and page.count(" checked>") == 1
    # each column's cells carry its tab's class; the last tab's CSS shows every column
    outcome = re.findall(r'<th class="c c0">([^<]*)</th>', page)
    assert "flow_status" in outcome and "sharpness_star" not in outcome
    last = len(labels) - 1
    assert f"#tab{last}:checked ~ .scroll .c {{ display: table-cell; }}" in page
    # the key column (replica) and the regime (not the same in every row here) stay outside the tabs
    assert '<th class="key">replica</th>' in page


def test_narrow_table_has_no_tabs(tmp_path):
    df = pd.DataFrame({"regime": ["s__eta-0p1", "s__eta-0p2"], "eta": [0.1, 0.2], "rank_flow": [1.0, np.nan]})
    page = _page(tmp_path, df)
    assert 'type="radio"' not in page and ">n/a</td>" in page


def test_user_text_and_config_are_escaped(tmp_path):
    df = pd.DataFrame({"regime": ["r"], "flag": ["<script>alert(1)</script>"]})
    page = _page(tmp_path, df, {"description": "<img src=x onerror=alert(1)>", "eta": 0.05})
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page and '"eta": 0.05' in page
    assert "Resolved configuration of this regime" in page
