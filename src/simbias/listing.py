"""``simbias list`` and ``simbias show NAME``: the run's targets and regimes, and one regime opened.

Both read the config as ``snakemake`` run from the same folder would (config.yaml, then each
``--configfile``, then the regimes file; :mod:`simbias.config_files`), validate it the same way, and
look at the files the pipeline would write (:mod:`simbias.targets`). Nothing is run or written.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from . import targets
from .config import validate_config
from .config_files import merged_config
from .config_job import data_subset, job_config


def load(configfiles: Sequence[str] = (), regimes_file: str | None = None) -> dict:
    """The validated config of ``snakemake [--configfile F] [--config regimes_file=R]`` here."""
    overrides = {} if regimes_file is None else {"regimes_file": regimes_file}
    return validate_config(merged_config(Path("config.yaml"), list(configfiles), overrides))


def size_text(n: float) -> str:
    """A file size for humans: '512 B', '26.4 kB', '1.2 MB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _present(files: list[str]) -> str:
    have = sum(Path(f).exists() for f in files)
    return "not run" if have == 0 else ("all made" if have == len(files) else f"{have} of {len(files)} made")


def list_text(cfg: dict) -> str:
    """The targets, the regimes and the sweeps, one line each."""
    regimes, results = cfg["regimes"], cfg["results"]
    sweeps = targets.sweeps(regimes)
    out = ["targets (snakemake NAME; `snakemake` alone builds all)"]
    for name, doc in targets.FIXED_TARGETS.items():
        out.append(f"  {name:<14} {doc}")
    width = max([len(n) for n in regimes if "sweep_of" not in regimes[n]] + list(map(len, sweeps)) + [6])
    plain = [n for n in regimes if "sweep_of" not in regimes[n]]
    out.append("")
    out.append("regimes (snakemake REGIME builds one; simbias show REGIME opens it)")
    out.append(f"  {'regime':<{width}}  {'target':<10} {'m':>5} {'d':>5} {'n':>5} {'replicas':>8}  files")
    for name in plain:
        r = regimes[name]
        files = targets.regime_files(name, regimes, results)
        out.append(
            f"  {name:<{width}}  {r['target']:<10} {r['m']:>5} {r['d']:>5} {r['n']:>5} {r['replicas']:>8}  "
            f"{_present(files)}"
        )
    if not plain:
        out.append("  (none)")
    if sweeps:
        out.append("")
        out.append("sweeps (snakemake SWEEP builds every grid point; simbias show SWEEP lists them)")
        for base, points in sweeps.items():
            first = regimes[points[0]]
            axes = " x ".join(first["sweep_of"]["axes"])
            files = targets.regime_files(base, regimes, results)
            out.append(
                f"  {base:<{width}}  {first['target']:<10} {len(points)} grid points over {axes}  {_present(files)}"
            )
    return "\n".join(out)


def _differences(a, b, path: str = "") -> list[str]:
    """The dotted names of the fields where two configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{path}{k}.")]
    return [] if a == b else [path.rstrip(".")]


def file_status(path: str, reg: dict) -> str:
    """'missing', or the file's size and date; for NetCDF, whether it was made with this config."""
    p = Path(path)
    if not p.exists():
        return "missing"
    stat = p.stat()
    when = datetime.datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M")
    text = f"{size_text(stat.st_size):>9}  {when}"
    if p.suffix != ".nc":
        return text
    import netCDF4

    try:
        with netCDF4.Dataset(p) as ds:
            stored = json.loads(ds.getncattr("config_json")) if "config_json" in ds.ncattrs() else None
    except (OSError, RuntimeError, ValueError) as exc:
        return f"{text}  unreadable ({type(exc).__name__}: {exc}): delete it and run again"
    if stored is None:
        return f"{text}  no config recorded"
    expected = data_subset(reg) if p.name == "data.nc" else job_config(reg)
    diff = _differences(stored, expected)
    if not diff:
        return f"{text}  made with this config"
    shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
    return f"{text}  made with another config ({shown} differ): snakemake remakes it"


def show_text(name: str, cfg: dict) -> str:
    """A regime (or a sweep, or a grid point) opened: its config and its files (``simbias show``
    adds the key numbers of ``simbias summary`` once comparison.nc exists)."""
    regimes, results = cfg["regimes"], cfg["results"]
    sweeps = targets.sweeps(regimes)
    if name in sweeps:
        return _show_sweep(name, sweeps[name], cfg)
    reg = regimes[name]
    out = [f"{name}: {targets.describe(name, regimes)}"]
    out.append(f"  target {reg['target']}; `snakemake {name}` builds the files below")
    out.append("config (resolved: the schema's defaults filled in)")
    out += [
        "  " + line
        for line in yaml.safe_dump(
            reg, sort_keys=True, allow_unicode=True, default_flow_style=None, width=100
        ).splitlines()
    ]
    files = targets.regime_files(name, regimes, results)
    out.append(f"files ({_present(files)})")
    width = max(map(len, files))
    out += [f"  {f:<{width}}  {file_status(f, reg)}" for f in files]
    if not Path(results, name, "comparison.nc").exists():
        out.append("comparison: not computed yet (comparison.nc missing)")
    return "\n".join(out)


def _show_sweep(base: str, points: list[str], cfg: dict) -> str:
    regimes, results = cfg["regimes"], cfg["results"]
    first = regimes[points[0]]
    out = [f"{base}: {targets.describe(base, regimes)}"]
    out.append(f"  target {first['target']}; `snakemake {base}` builds every grid point's files")
    out.append("grid points (simbias show POINT opens one)")
    width = max(map(len, points))
    for p in points:
        out.append(f"  {p:<{width}}  {_present(targets.regime_files(p, regimes, results))}")
    table = Path(results, "sweeps", f"{base}.csv")
    for f in [str(table), *targets.phase_figures([base], results)]:
        out.append(f"  {f}  {file_status(f, first)}")
    if table.exists():
        import pandas as pd

        out.append(f"the sweep's table ({table}: median ranks at SGD's and the flow's end, F − F*)")
        out += ["  " + line for line in pd.read_csv(table).to_string(index=False).splitlines()]
    return "\n".join(out)


def unknown(name: str, cfg: dict) -> str:
    """One line for ``simbias show NAME`` where NAME is no regime or sweep."""
    regimes = cfg["regimes"]
    if name in targets.FIXED_TARGETS:
        return f"'{name}' is a target, not a regime: simbias list shows its regimes"
    return targets.unknown_target(name, [*targets.sweeps(regimes), *regimes], "regime or sweep")
