"""Command line: ``python -m simbias summary results/fig1a`` prints a readable summary of a
regime's outputs (sizes, final ranks, the comparison with the theory, provenance).

Give a regime's folder (``results/<regime>``) or the results folder itself (then every
regime in it, one after the other). Nothing is recomputed: everything printed is read from
``data.nc``, ``sgd.nc``, ``flow.nc`` and ``comparison.nc`` (see docs/outputs.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ._version import __version__
from .listing import size_text as _size

FILES = ("data.nc", "sgd.nc", "flow.nc", "comparison.nc", "comparison.csv")


def _g(x, fmt: str = ".3g") -> str:
    """A number for humans; 'n/a' for NaN or None."""
    if x is None:
        return "n/a"
    x = float(x)
    return "n/a" if not np.isfinite(x) else format(x, fmt)


def _counts(values) -> str:
    """'1 (30 replicas), 2 (2)': how often each value occurs, most common first."""
    c = Counter(int(v) for v in np.asarray(values).ravel())
    parts = [f"{k} ({n} replica{'s' if n != 1 else ''})" for k, n in c.most_common()]
    return ", ".join(parts) if parts else "n/a"


def _open(folder: Path, name: str) -> xr.Dataset | None:
    """The file loaded, None where it is missing; OSError naming it where it cannot be read."""
    path = folder / name
    if not path.exists():
        return None
    from .storage import open_dataset

    return open_dataset(path)


def _is_regime(folder: Path) -> bool:
    return any((folder / f).exists() for f in FILES[:4])


def regime_folders(path: Path) -> list[Path]:
    """The regime folders at ``path``: itself, or its sub-folders holding pipeline outputs."""
    if _is_regime(path):
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_dir() and _is_regime(p))
    return []


def summarize_regime(folder: Path) -> str:
    """The readable summary of one regime folder, as text."""
    folder = Path(folder)
    data, sgd, flow, cmp_ = (_open(folder, f) for f in FILES[:4])
    # the first file with the full config (data.nc's config holds only the data fields)
    first = next(ds for ds in (sgd, flow, cmp_, data) if ds is not None)
    last = next(ds for ds in (cmp_, flow, sgd, data) if ds is not None)
    regime = first.attrs.get("regime", folder.name)
    cfg = json.loads(first.attrs.get("config_json", "{}"))
    out: list[str] = []
    add = out.append

    add(f"regime {regime}  ({folder})")
    if cfg.get("description"):
        add(f"  {cfg['description']}")

    # ---- files and sizes
    add("files")
    for name in FILES:
        p = folder / name
        add(f"  {name:<15} {_size(p.stat().st_size) if p.exists() else 'missing'}")

    # ---- problem size
    add("sizes")
    if data is not None:
        m, d, n = data.sizes["neuron"], data.sizes["feature"], data.sizes["sample"]
        add(
            f"  m = {m} neurons, d = {d} input dimensions, n = {n} training points, {data.sizes['replica']} replicas"
        )
        if "gram_min_eig" in data.attrs:
            add(f"  μ = λ_min(XXᵀ) = {_g(data.attrs['gram_min_eig'])}")
    if cfg:
        add(f"  η = {cfg.get('eta')}, σ = {cfg.get('sigma')}, activation {json.dumps(cfg.get('activation'))}")
    if sgd is not None:
        steps, tau = sgd["step"].values, sgd["tau"].values
        div = int(np.asarray(sgd["diverged"].values, dtype=bool).sum())
        add(
            f"  SGD:  {int(steps[-1]):,} steps, {sgd.sizes['record']} records, τ from {_g(tau[0])} to "
            f"{_g(tau[-1])}; {div} of {sgd.sizes['replica']} replicas diverged"
        )
    if flow is not None:
        tau, tau_end = flow["tau"].values, flow["tau_end"].values
        status = Counter(str(s) for s in flow["status"].values)
        end = np.nanmax(tau_end) if np.isfinite(tau_end).any() else None  # None: no replica flowed
        add(
            f"  flow: {flow.sizes['record']} records, τ from {_g(tau[0])} to {_g(end)}; "
            + ", ".join(f"{k}: {v}" for k, v in status.most_common())
        )

    # ---- final ranks
    add("final ranks (singular values of Z = ΘXᵀ above 1e-3 × the largest)")
    if cmp_ is not None:
        add(f"  end of SGD:  {_counts(cmp_['feature_rank_sgd_end'].values)}")
        add(f"  end of flow: {_counts(cmp_['feature_rank_flow_end'].values)}")
        if "cluster_count_flow_end" in cmp_:
            add(f"  neuron clusters at the flow's end: {_counts(cmp_['cluster_count_flow_end'].values)}")
    elif sgd is not None:
        from .analysis import numerical_rank

        add(f"  end of SGD: {_counts(numerical_rank(sgd['feature_sv'].values[:, -1]))}")

    # ---- theory
    add("theory")
    if cmp_ is None:
        add("  comparison.nc missing: run the compare stage")
    else:
        ok = ~np.asarray(cmp_["sgd_diverged"].values, dtype=bool)
        R = int(ok.sum())

        def med(name: str) -> str:
            return (
                _g(np.nanmedian(cmp_[name].values[ok]))
                if R and np.isfinite(cmp_[name].values[ok]).any()
                else "n/a"
            )

        def count(name: str) -> str:
            v = cmp_[name].values[ok]
            v = v[np.isfinite(v)]
            return "n/a" if v.size == 0 else f"{int(v.sum())} of {v.size}"

        t2 = bool(cmp_.attrs.get("theorem2_applicable", 0))
        t3 = bool(cmp_.attrs.get("theorem3_applicable", 0))
        add(
            "  Theorem 2 (unique stationary point, rank one): "
            + ("applies" if t2 else f"does not apply ({cmp_.attrs.get('theorem2_reason', '')})")
        )
        if t2:
            add(f"    F* = {_g(cmp_['sharpness_star'].values[0], '.6g')}")
            add(
                f"    reached the Theorem 2 point (max|z − z*| ≤ {_g(cmp_.attrs.get('z_tol'))}): "
                f"{count('reached_theorem2_point')} replicas"
            )
            add(
                f"    median max|z − z*|: {med('z_dist_sgd_end')} at SGD's end, {med('z_dist_flow_end')} at the flow's end"
            )
            add(f"    median F − F* at the flow's end: {med('sharpness_gap')}")
        else:
            add(f"    median F at the flow's end: {med('sharpness_flow_end')}")
        add(
            f"  Theorem 3 (time to ε-stationarity, ε = {_g(cmp_.attrs.get('epsilon'))}): "
            + ("applies" if t3 else f"does not apply ({cmp_.attrs.get('theorem3_reason', '')})")
        )
        add(f"    median observed τ: {med('tau_eps_observed')} (from the flow's start)")
        if t3:
            add(
                f"    median bound τ:    {med('tau_eps_theorem3_bound')}; bound held for {count('theorem3_bound_holds')}"
            )
            add(f"    Lemma 6 held at every record for {count('lemma6_holds_all_records')}")
        add(f"    median ‖∇_M F‖ at the flow's end: {med('grad_norm_end')}")
        flags = Counter(str(f) for f in cmp_["flag"].values if str(f) not in ("", "nan"))
        if flags:
            add("  flagged: " + "; ".join(f"{k} ({v})" for k, v in flags.most_common()))

    # ---- provenance
    add("provenance")
    shas = {
        name: ds.attrs.get("config_sha256")
        for name, ds in zip(FILES[:4], (data, sgd, flow, cmp_), strict=True)
        if ds is not None
    }
    add(f"  simbias {first.attrs.get('package_version', '?')}, {first.attrs.get('Conventions', '?')}")
    for name, ds in zip(FILES[:4], (data, sgd, flow, cmp_), strict=True):
        if ds is not None:
            add(
                f"  {name:<14} created {ds.attrs.get('created', '?')}, backend {ds.attrs.get('backend', '?')}, "
                f"{ds.attrs.get('dtype', '?')}, config sha256 {str(ds.attrs.get('config_sha256', '?'))[:12]}"
            )
    add("  (data.nc's config sha256 covers only the fields the data stage uses)")
    if len({s for k, s in shas.items() if k != "data.nc"}) > 1:
        add(
            "  WARNING: sgd/flow/comparison come from different configs (config_sha256 differs): rerun the pipeline"
        )
    if "history" in last.attrs:
        add(f"  history: {last.attrs['history']}")
    return "\n".join(out)


def _summary(args: argparse.Namespace) -> int:
    status = 0
    for i, path in enumerate(args.paths):
        folders = regime_folders(Path(path))
        if not folders:
            print(f"simbias summary: no pipeline outputs (data.nc, sgd.nc, ...) in {path}", file=sys.stderr)
            status = 2
            continue
        for j, folder in enumerate(folders):
            try:
                text = summarize_regime(folder)
            except OSError as exc:  # a corrupt or truncated file: one line naming it
                print(f"simbias summary: {exc}", file=sys.stderr)
                status = 1
                continue
            if i or j:
                print()
            print(text)
    return status


def _config_options(p: argparse.ArgumentParser) -> None:
    """The options that say which config to read, as snakemake's (run from the workflow's folder)."""
    p.add_argument(
        "--configfile",
        action="append",
        default=[],
        metavar="FILE",
        help="an extra config file after config.yaml, as snakemake --configfile (repeatable)",
    )
    p.add_argument(
        "--regimes-file",
        metavar="FILE",
        help="a regimes file, as snakemake --config regimes_file=FILE",
    )


def _with_config(args: argparse.Namespace, what) -> int:
    from .config_yaml import ConfigError
    from .listing import load

    try:
        cfg = load(args.configfile, args.regimes_file)
    except ConfigError as exc:
        print(f"simbias {args.command}: config error: {exc}", file=sys.stderr)
        return 1
    return what(cfg)


def _list(args: argparse.Namespace) -> int:
    from .listing import list_text

    def show(cfg: dict) -> int:
        print(list_text(cfg))
        return 0

    return _with_config(args, show)


def _key_numbers(folder: Path) -> list[str]:
    """The key comparison numbers of ``simbias summary`` (final ranks, Theorems 2 and 3)."""
    try:
        lines = summarize_regime(folder).splitlines()
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        return [f"could not read the outputs ({type(exc).__name__}: {exc}); see simbias summary {folder}"]
    start = next(i for i, line in enumerate(lines) if line.startswith("final ranks"))
    return lines[start : lines.index("provenance")]


def _show(args: argparse.Namespace) -> int:
    from .listing import show_text, unknown

    def show(cfg: dict) -> int:
        regimes = cfg["regimes"]
        if args.name not in regimes and not any(
            r.get("sweep_of", {}).get("base") == args.name for r in regimes.values()
        ):
            print(f"simbias show: {unknown(args.name, cfg)}", file=sys.stderr)
            return 2
        print(show_text(args.name, cfg))
        folder = Path(cfg["results"], args.name)
        if args.name in regimes and (folder / "comparison.nc").exists():
            print("\n".join(_key_numbers(folder)))
        return 0

    return _with_config(args, show)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="simbias",  # also `python -m simbias`
        description="Tools for the simbias pipeline's config and outputs (see README.md and docs/outputs.md). "
        "list and show read config.yaml in the current folder, as snakemake does.",
    )
    parser.add_argument("--version", action="version", version=f"simbias {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "list",
        help="list the targets, regimes and sweeps of the config, and how many of their files exist",
        description="The targets (snakemake NAME), the regimes and the sweeps of the config "
        "(config.yaml here, with the schema's defaults), and how many of each one's files are made.",
    )
    _config_options(p)
    p.set_defaults(func=_list)
    p = sub.add_parser(
        "show",
        help="open a regime or sweep: its resolved config, its files and their status, its key numbers",
        description="A regime's resolved config, the files `snakemake NAME` makes (missing, or made "
        "with this config or another), and the comparison with Theorems 2 and 3 once computed; for a "
        "sweep, its grid points and its table.",
    )
    p.add_argument("name", metavar="NAME", help="a regime, a sweep or a sweep's grid point (simbias list)")
    _config_options(p)
    p.set_defaults(func=_show)
    p = sub.add_parser(
        "summary",
        help="print a readable summary of a regime's outputs",
        description="Sizes, final ranks, the comparison with Theorems 2 and 3, and provenance.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="results/<regime> (or results/ for every regime)")
    p.set_defaults(func=_summary)
    args = parser.parse_args(argv)
    return args.func(args)
