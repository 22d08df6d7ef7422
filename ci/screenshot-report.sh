#!/usr/bin/env bash
# Screenshot a Snakemake HTML report in headless chromium (Debian: apt-get install -y chromium).
#   ci/screenshot-report.sh report.html out.png [CATEGORY [FILE_SUFFIX [info]]]
# Without CATEGORY: the start page. With CATEGORY (e.g. fig1a): that category's list. With
# FILE_SUFFIX (e.g. fig1a_trajectory.png or comparison.html): that result shown in the content
# pane beside the category's list, as a click on it shows it; with `info` as fifth argument the
# left pane shows the result's caption instead of the list.
# WINDOW_SIZE (default 1400,1000) sets the window.
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); cat=${3:-}; file=${4:-}; info=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
page="$tmp/page.html"
cp "$report" "$page"
if [[ -n "$cat" ]]; then
  cat >>"$page" <<JS
<script>
var inCat = [].concat.apply([], Object.values(categories["$cat"] || {}));
var key = inCat.concat(Object.keys(results)).find(function (p) { return "$file" && p.endsWith("$file"); });
setTimeout(function () { app.showCategory("$cat"); }, 300);
if (key) {
  if ("$info") setTimeout(function () { app.showResultInfo(key); }, 600);
  var kind = /\.(png|jpe?g|svg)$/.test(key) ? "img" : /\.html?$/.test(key) ? "html" : null;
  if (kind) setTimeout(function () {
    app.setView({content: kind, contentPath: results[key].data_uri, resultPath: key});
  }, 900);
}
</script>
JS
fi
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/profile" --virtual-time-budget=5000 --hide-scrollbars \
  --window-size="${WINDOW_SIZE:-1400,1000}" --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
