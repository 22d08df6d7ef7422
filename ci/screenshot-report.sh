#!/usr/bin/env bash
# Screenshot a Snakemake HTML report in headless chromium (Debian: apt-get install -y chromium).
#   ci/screenshot-report.sh report.html out.png [CATEGORY [FILE_SUFFIX]]
# Without CATEGORY: the start page. With CATEGORY (e.g. fig1a): that category's list. With
# FILE_SUFFIX (e.g. fig1a_trajectory.png): that result opened in the viewer.
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); cat=${3:-}; file=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
page="$tmp/page.html"
cp "$report" "$page"
if [[ -n "$cat" ]]; then
  cat >>"$page" <<JS
<script>
var key = Object.keys(results).find(function (p) { return "$file" && p.endsWith("$file"); });
setTimeout(function () { app.showCategory("$cat"); }, 300);
if (key) {
  var img = /\.(png|jpe?g|svg)$/.test(key);
  setTimeout(function () { app.showResultInfo(key); }, 600);
  if (img) setTimeout(function () {
    app.setView({content: "img", contentPath: results[key].data_uri, resultPath: key});
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
