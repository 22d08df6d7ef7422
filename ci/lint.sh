#!/usr/bin/env bash
# Lint and format checks, as CI runs them (from the repository root, with .venv installed):
#   snakemake --lint   nothing but the advice to give each rule a conda env or container
#                      (this project installs with pip into a virtualenv, see README);
#   snakefmt --check   Snakefile and workflow/rules/*.smk formatted;
#   ruff check, ruff format --check   Python lint and format;
#   pylint duplicate-code  no block of 6+ lines repeated in the library, scripts, benchmarks
#                      or tests; the compiled fast paths (kernels_cpu.py, cuda/) are the only
#                      allowed second copy of the math (pinned to the NumPy reference by tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
status=0

echo "== snakemake --lint"
lint=$("$BIN/snakemake" --lint 2>&1) || true
# What is left once the allowed advice (its title line and indented text) is taken out.
rest=$(printf '%s\n' "$lint" | "$BIN/python" -c '
import sys
ALLOWED = "Specify a conda environment or container for each rule."
out, skip, header = [], False, None
for line in sys.stdin.read().splitlines():
    if line.startswith("Using workflow specific profile"):  # profiles/default, loaded by default
        continue
    if line.startswith("Lints for "):
        header, skip = line, False
        continue
    if line.startswith("    * "):
        skip = line[6:].rstrip(":").strip() == ALLOWED
        if not skip:
            out += [header or "", line]
        continue
    if skip or not line.strip():
        continue
    if line.startswith("      ") and out:
        out.append(line)
    else:
        out.append(line)  # anything else (an error, a new kind of message) fails the check
print("\n".join(out))
')
if [[ -n "${rest//[[:space:]]/}" ]]; then
  printf '%s\n' "$rest"
  echo "snakemake --lint: findings beyond the conda/container advice" >&2
  status=1
else
  n=$(grep -c "^Lints for rule" <<<"$lint" || true)
  echo "ok (only the conda/container advice, for $n rules)"
fi

echo "== snakefmt --check ."
"$BIN/snakefmt" --check . || status=1

echo "== ruff check"
"$BIN/ruff" check . || status=1

echo "== ruff format --check"
"$BIN/ruff" format --check . || status=1

echo "== pylint duplicate-code (6+ lines)"
"$BIN/pylint" --disable=all --enable=duplicate-code --min-similarity-lines=6 --score=n \
  --ignore=kernels_cpu.py,cuda src/simbias workflow/scripts benchmarks tests || status=1

exit $status
