#!/usr/bin/env bash
# Publish a finished sweep as a results page: archive its manifests and records into
# docs/results/NAME/records.tar.xz (deterministic: sorted names, fixed owner and mtime) and regenerate
# docs/results/NAME/report.md and its figures from that archive, exactly as a reader would.
#
#   scripts/publish_results.sh andi-bench-results/study study
#
# tests/bench/test_published_results.py checks that the committed tables are what the committed archive gives.
set -euo pipefail
if [[ $# -ne 2 ]]; then
    echo "usage: $0 RESULTS_DIR NAME   (e.g. $0 andi-bench-results/study study)" >&2
    exit 2
fi
[[ -d "$1" ]] || { echo "$1: not a directory" >&2; exit 2; }
src="$(cd "$1" && pwd)"
dest="docs/results/$2"
cd "$(dirname "$0")/.."
ls "$src"/manifest-*.json >/dev/null 2>&1 || { echo "$src: no manifest-*.json (run the sweep first)" >&2; exit 2; }
mkdir -p "$dest"
rm -rf "$dest/figures"
# Only what the report reads: the manifests and the run records (no claims, quarantine or old report).
(cd "$src" && find . -maxdepth 1 -name '*.json' -printf '%P\n' | grep -E '^(manifest-.*|[0-9a-f]{64})\.json$' |
    LC_ALL=C sort) |
    XZ_OPT=-9 tar --create --xz --file "$dest/records.tar.xz" --directory "$src" \
        --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00:00Z' --files-from=-
andi-bench report "$dest/records.tar.xz" --out "$dest/report.md"
echo "published $src -> $dest ($(du -h "$dest/records.tar.xz" | cut -f1) of records)"
