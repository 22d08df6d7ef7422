#!/usr/bin/env python
"""Do two results folders hold the same NetCDF data, bit for bit? (a refactor's check)

    .venv/bin/python tests/same_outputs.py BEFORE/results AFTER/results

Every .nc file under either folder must be in both, with the same data variables and
coordinates, each equal by ``np.array_equal(..., equal_nan=True)`` (same shape, same
values, NaN where the other has NaN), of the same dtype and with the same attributes
(long_name, units, flags). The files' global attributes are not compared (they hold
creation times and code hashes). Prints one line per file; exits 1 on any
difference. Not part of the test suite: it compares two pipeline runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two NetCDF files' variables and coordinates ([] when nothing)."""
    out = []
    with xr.open_dataset(a, decode_times=False) as da, xr.open_dataset(b, decode_times=False) as db:
        names_a, names_b = set(da.variables), set(db.variables)
        out += [f"only in the first: {n}" for n in sorted(names_a - names_b)]
        out += [f"only in the second: {n}" for n in sorted(names_b - names_a)]
        for name in sorted(names_a & names_b):
            x, y = da[name].values, db[name].values
            if x.dtype != y.dtype:
                out.append(f"{name}: dtype {x.dtype} vs {y.dtype}")
            elif x.dtype.kind in "fc":
                if not np.array_equal(x, y, equal_nan=True):
                    out.append(f"{name}: values differ")
            elif not np.array_equal(x, y):
                out.append(f"{name}: values differ")
            ax, ay = da[name].attrs, db[name].attrs
            if ax.keys() != ay.keys() or any(not np.array_equal(ax[k], ay[k]) for k in ax):
                out.append(f"{name}: attributes differ")
    return out


def main(before: str, after: str) -> int:
    b, a = Path(before), Path(after)
    files = sorted({p.relative_to(b) for p in b.rglob("*.nc")} | {p.relative_to(a) for p in a.rglob("*.nc")})
    bad = 0
    for rel in files:
        if not (b / rel).exists() or not (a / rel).exists():
            print(f"{rel}: only in {'the second' if not (b / rel).exists() else 'the first'} folder")
            bad += 1
            continue
        diff = differences(b / rel, a / rel)
        print(f"{rel}: {'identical data' if not diff else '; '.join(diff)}")
        bad += bool(diff)
    print(f"{len(files)} files, {bad} with differences")
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
