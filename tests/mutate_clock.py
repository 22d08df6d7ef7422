#!/usr/bin/env python
"""Mutation check for tests/test_clock.py: break the clock or the noise scale, the test must fail.

    .venv/bin/python tests/mutate_clock.py            # the unmutated run, then every mutant
    .venv/bin/python tests/mutate_clock.py --run NAME # one of them (used by the loop)

Each mutant runs tests/test_clock.py in its own process with one public function of
simbias.sgd replaced: ``tau_of_step`` (the clock) or ``label_noise_sgd`` (called with the
label-noise standard deviation changed, i.e. the noise scaled differently). It is not part
of the test suite (about a minute per mutant); it prints one line per mutant and exits 1
if the unmutated test fails or any mutant survives.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _clock(f):
    def tau_of_step(step, eta, sigma):
        return f(eta, sigma) * np.asarray(step, dtype=float)

    return tau_of_step


def _noise(f):
    from simbias import sgd

    real = sgd.label_noise_sgd

    def label_noise_sgd(*args, sigma, **kw):
        return real(*args, sigma=f(sigma), **kw)

    return label_noise_sgd


# name -> (simbias.sgd attribute, replacement factory)
MUTANTS = {
    "tau = eta^2 sigma k": ("tau_of_step", lambda: _clock(lambda e, s: e**2 * s)),
    "tau = 2 eta^2 sigma^2 k": ("tau_of_step", lambda: _clock(lambda e, s: 2 * e**2 * s**2)),
    "tau = eta^2 sigma^2 k / 2": ("tau_of_step", lambda: _clock(lambda e, s: e**2 * s**2 / 2)),
    "noise ~ sqrt(sigma)": ("label_noise_sgd", lambda: _noise(np.sqrt)),
    "noise ~ sqrt(2) sigma": ("label_noise_sgd", lambda: _noise(lambda s: np.sqrt(2) * s)),
}


def run_one(name: str) -> int:
    import pytest

    from simbias import sgd

    if name != "none":
        attr, factory = MUTANTS[name]
        setattr(sgd, attr, factory())
    return pytest.main(
        ["-q", "-p", "no:cacheprovider", "--rootdir", str(HERE.parent), str(HERE / "test_clock.py")]
    )


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        return run_one(sys.argv[2])
    bad = 0
    for name in ["none", *MUTANTS]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, __file__, "--run", name], capture_output=True, text=True, cwd=HERE.parent
        )
        passed = proc.returncode == 0
        want = name == "none"
        verdict = ("ok" if passed == want else "WRONG") + (": test passes" if passed else ": test fails")
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
        print(
            f"{'unmutated' if want else 'mutant ' + name:32s} {verdict:22s} ({summary}; {time.monotonic() - t0:.0f} s)"
        )
        bad += passed != want
    print("all mutants killed" if bad == 0 else f"{bad} problem(s)")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
