#!/usr/bin/env bash
# The README's three reports (default, extensions, paper), built and opened in headless chromium:
# config.yaml's regimes made small by ci/report-small.yaml (2 replicas, short SGD runs: the same
# regimes, targets, sweep and brute-force runs, so every kind of report page is there), run,
# reported, and each report's start page and table pages screenshotted.
#   ci/report-check.sh [WORKDIR [SHOTS]]     (default: results/_report_check, WORKDIR/shots)
# SNAKEMAKE names the snakemake to run (default .venv/bin/snakemake). About 90 jobs: minutes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${1:-$repo/results/_report_check}")
shots=$(realpath -m "${2:-$work/shots}")
snakemake=${SNAKEMAKE:-$repo/.venv/bin/snakemake}
mkdir -p "$work" "$shots"
cp "$repo/config.yaml" "$work/config.yaml"
args=(-s "$repo/Snakefile" -d "$work" --config "regimes_file=$repo/ci/report-small.yaml")
"$snakemake" "${args[@]}" --cores 2 all extensions paper
shot() { bash "$repo/ci/screenshot-report.sh" "$@"; }
for target in default extensions paper; do
  report="$work/report_$target.html"
  if [[ $target == default ]]; then
    "$snakemake" "${args[@]}" --report "$report"
    summary=summary.html
  else
    "$snakemake" "${args[@]}" --report "$report" "$target"
    summary=summary_$target.html
  fi
  grep -q "System Message" "$report" && { echo "rST error in $report" >&2; exit 1; }
  shot "$report" "$shots/${target}_index.png"
  shot "$report" "$shots/${target}_summary.png" summary "$summary"
done
shot "$work/report_default.html" "$shots/default_fig1a_table.png" fig1a comparison.html
shot "$work/report_default.html" "$shots/default_fig1a_trajectory.png" fig1a fig1a_trajectory.png
shot "$work/report_extensions.html" "$shots/extensions_tanh_table.png" tanh comparison.html
shot "$work/report_extensions.html" "$shots/extensions_sweep_point_table.png" eta_sigma \
  eta_sigma__eta-0p05__sigma-0p3/comparison.html
shot "$work/report_extensions.html" "$shots/extensions_sweep_category.png" eta_sigma
shot "$work/report_extensions.html" "$shots/extensions_sweep_table.png" sweeps eta_sigma.html
shot "$work/report_paper.html" "$shots/paper_fig1a_paper_table.png" fig1a_paper comparison.html
