"""docs/outputs.md against the files a run writes; CF metadata and compression; the report.

The tiny config (tests/data/tiny.yaml) is run once per session (shared with test_cli.py
through ``tiny_workdir``); every NetCDF file it writes is checked variable by variable.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from simbias import storage

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny.yaml"
DOC = REPO / "docs" / "outputs.md"
NC_FILES = ("data.nc", "sgd.nc", "flow.nc", "comparison.nc")
REGIMES = ("tiny_a", "tiny_b")
CF_GLOBAL = ("Conventions", "title", "history", "source", "references")


def tiny_workdir(tmp_path_factory) -> Path:
    """The tiny config run through Snakemake, once per test session (default target)."""
    work = tmp_path_factory.getbasetemp() / "simbias-tiny-shared"
    done = work / ".tiny-run-complete"
    if done.exists():
        return work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    shutil.copy(TINY, work / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done.touch()
    return work


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_workdir(tmp_path_factory)


# --------------------------------------------------------------------------- the doc, parsed


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row ('\\|' is a literal bar)."""
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|") for p in parts]


def doc_tables() -> dict[str, dict[str, list[str]]]:
    """{section heading: {first cell without backticks: the row's cells}} for every table."""
    tables: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        if line.startswith("|") and section is not None:
            cells = _cells(line)
            if not cells or set(cells[0]) <= {"-", ":"} or cells[0] in ("variable", "column", "attribute"):
                continue
            tables.setdefault(section, {})[cells[0].strip("`")] = cells
    return tables


def _dims(cell: str) -> tuple[str, ...]:
    return tuple(d.strip() for d in cell.strip("()").split(",") if d.strip())


def test_doc_has_a_table_for_every_file():
    t = doc_tables()
    for name in NC_FILES[:3] + ("comparison.nc` and `comparison.csv", "summary.csv"):
        assert f"`{name}`" in t, sorted(t)
    assert "Global attributes (every NetCDF file)" in t


def _section(fname: str) -> str:
    return "`comparison.nc` and `comparison.csv`" if fname == "comparison.nc" else f"`{fname}`"


def test_every_written_variable_is_documented_with_dims_and_units(tiny):
    tables = doc_tables()
    seen: dict[str, set[str]] = {f: set() for f in NC_FILES}
    for regime in REGIMES:
        for fname in NC_FILES:
            table = tables[_section(fname)]
            with xr.open_dataset(tiny / "results" / regime / fname) as ds:
                for name in ds.variables:
                    assert name in table, f"{fname}: variable '{name}' is not documented in docs/outputs.md"
                    _, dims, units, meaning = table[name]
                    assert ds[name].dims == _dims(dims), (fname, name, ds[name].dims, dims)
                    assert ds[name].attrs.get("units", "—") == units, (fname, name)  # —: no units
                    assert ds[name].attrs["long_name"].strip(), (fname, name)
                    assert meaning
                    seen[fname].add(name)
    for fname in NC_FILES:  # and nothing documented that no file has (a stale doc)
        assert set(tables[_section(fname)]) == seen[fname], (
            fname,
            set(tables[_section(fname)]) ^ seen[fname],
        )


def test_every_variable_has_a_proper_long_name(tiny):
    """long_name from storage.VARIABLES or the stage, never the fallback made from the name."""
    for regime in REGIMES:
        for fname in NC_FILES:
            with xr.open_dataset(tiny / "results" / regime / fname) as ds:
                for name in ds.variables:
                    assert ds[name].attrs["long_name"] != name.replace("_", " "), (fname, name)


def test_csv_columns_are_documented(tiny):
    tables = doc_tables()
    per_replica = {
        k for k, cells in tables[_section("comparison.nc")].items() if _dims(cells[1]) == ("replica",)
    }
    for regime in REGIMES:
        cols = set(pd.read_csv(tiny / "results" / regime / "comparison.csv").columns)
        assert cols - {"regime"} <= per_replica, cols - per_replica
    summary = pd.read_csv(tiny / "results" / "summary.csv")
    assert list(summary.columns) == list(tables["`summary.csv`"]), "summary.csv columns vs docs/outputs.md"


def test_global_attributes_follow_cf_and_the_contract(tiny):
    documented = set(doc_tables()["Global attributes (every NetCDF file)"])
    for regime in REGIMES:
        for fname in NC_FILES:
            with xr.open_dataset(tiny / "results" / regime / fname) as ds:
                assert documented <= set(ds.attrs), (fname, documented - set(ds.attrs))
                assert re.fullmatch(r"CF-1\.\d+", ds.attrs["Conventions"])
                for key in CF_GLOBAL:
                    assert str(ds.attrs[key]).strip(), (fname, key)
                assert "Gatmiry" in ds.attrs["references"] and "ICML 2024" in ds.attrs["references"]
                assert ds.attrs["history"].startswith(ds.attrs["created"])
                assert ds.attrs["regime"] == regime


def test_numeric_variables_are_compressed_and_chunked_along_record(tiny):
    import netCDF4

    for regime in REGIMES:
        for fname in NC_FILES:
            with netCDF4.Dataset(tiny / "results" / regime / fname) as nc:
                for name, var in nc.variables.items():
                    if var.dtype is str or var.size == 0 or not var.dimensions:
                        continue
                    assert var.filters()["zlib"], (fname, name)
                    chunks = var.chunking()
                    assert chunks != "contiguous", (fname, name)
                    for dim, c in zip(var.dimensions, chunks, strict=True):
                        if dim.endswith("record"):
                            assert c <= storage.RECORD_CHUNK


def test_chunks_of_a_big_trajectory_stay_small():
    var = xr.Variable(("replica", "record", "neuron", "feature"), np.empty((256, 3000, 30, 10)))
    chunks = dict(zip(var.dims, storage.chunk_sizes(var), strict=True))
    assert chunks["record"] <= storage.RECORD_CHUNK and chunks["neuron"] == 30 and chunks["feature"] == 10
    assert 8 * np.prod(list(chunks.values())) <= storage.CHUNK_BYTES
    small = xr.Variable(("replica", "record"), np.empty((32, 76)))
    assert storage.chunk_sizes(small) == (32, 76)


def test_flag_variables_carry_cf_flag_attributes(tiny):
    with xr.open_dataset(tiny / "results" / "tiny_a" / "comparison.nc") as ds:
        for name in ("sgd_diverged", "reached_theorem2_point", "theorem2_applicable"):
            assert (
                list(ds[name].attrs["flag_values"]) == [0, 1] and ds[name].attrs["flag_meanings"] == "no yes"
            )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the checker's own IOOS SOS plugins
def test_files_pass_the_cf_checker(tiny, tmp_path):
    """IOOS compliance-checker, CF 1.11, strict (installed in CI by the `cf` extra)."""
    pytest.importorskip("compliance_checker")
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    version = "cf:" + xr.open_dataset(tiny / "results" / "tiny_a" / "data.nc").attrs["Conventions"][3:]
    for regime in REGIMES:
        for fname in NC_FILES:
            out = tmp_path / f"{regime}_{fname}.txt"
            passed, errors = ComplianceChecker.run_checker(
                str(tiny / "results" / regime / fname), [version], 0, "strict", output_filename=str(out)
            )
            assert passed and not errors, out.read_text()


# --------------------------------------------------------------------------- the example


def doc_example() -> str:
    """The first python block after the heading 'Reading the files'."""
    text = DOC.read_text()
    m = re.search(r"## Reading the files\s+```python\n(.*?)```", text, flags=re.S)
    assert m, "no python example under 'Reading the files' in docs/outputs.md"
    return m.group(1)


def test_xarray_example_is_five_lines_and_runs(tiny, tmp_path):
    code = doc_example()
    assert len([line for line in code.splitlines() if line.strip()]) == 5, code
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "fig1a").symlink_to(tiny / "results" / "tiny_a")  # the example names fig1a
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "fig1a_replica0_sv2.png"
    assert png.exists() and png.stat().st_size > 1000


# --------------------------------------------------------------------------- the report


def build_report(work: Path, report: Path, *targets: str) -> str:
    """`snakemake --report REPORT [TARGET]` in an existing run's folder: the report's HTML."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work)]
    proc = subprocess.run(cmd + ["--report", str(report), *targets], capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR" not in proc.stderr, proc.stderr[-3000:]  # docutils errors in a caption
    html = report.read_text()
    assert "System Message" not in html, "an rST error shown in the report"
    return html


def embedded_pages(html: str) -> dict[str, str]:
    """The report's embedded HTML results (the tables' pages), by their path, without the line
    break hints (<wbr>) in their column names."""
    entries = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    return {
        path: base64.b64decode(e["data_uri"].split(",", 1)[1]).decode().replace("<wbr>", "")
        for path, e in entries.items()
        if e["data_uri"].startswith("data:text/html")
    }


def test_report_holds_every_figure_table_and_config(tiny, tmp_path):
    # a regime behind the extensions target (not in this report), with a sweep-style name:
    # the regime table must list it without a dangling link to a category the report lacks
    work = tmp_path / "w"
    shutil.copytree(tiny, work, symlinks=True)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["regimes"]["later__eta-0p1"] = {**cfg["regimes"]["tiny_a"], "target": "extensions"}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    html = build_report(work, work / "report.html")
    for regime in REGIMES:
        for kind in ("singular_values", "trajectory", "neuron_pca"):
            assert f"{regime}_{kind}.png" in html
    # the tables are shown as HTML tables (embedded pages), not offered as CSV downloads; each
    # regime's page ends with its resolved configuration
    pages = embedded_pages(html)
    assert (
        "<table>" in pages["results/summary.html"]
        and "median_z_dist_flow_end" in pages["results/summary.html"]
    )
    for regime in REGIMES:
        page = pages[f"results/{regime}/comparison.html"]
        assert "z_dist_flow_end" in page and "flow_status" in page and "<td" in page
        assert "Resolved configuration of this regime" in page and '"replicas": ' in page
    # tiny_b has n > d: its theory columns read n/a, its reason is given once above the table
    assert ">n/a</td>" in pages["results/tiny_b/comparison.html"]
    assert "The same in every row" in pages["results/tiny_b/comparison.html"]
    # the regime table lists this report's regimes, with readable activations
    table = html.split("Regimes in this run", 1)[1].split("</table>", 1)[0]
    assert "later__eta-0p1" not in table and all(r in table for r in REGIMES), table
    assert re.search(r"z(³|\\u00b3) \+ 0\.1z", html) and "nu = 0.1" not in html  # JSON-escaped
