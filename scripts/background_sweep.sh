#!/usr/bin/env bash
# Run or resume a long sweep in the background, safe to leave running while the working tree changes:
#   scripts/background_sweep.sh PROTOCOL OUT_DIR [andi-bench run options...]
#   scripts/background_sweep.sh study-v2 andi-bench-results/study-v2 --workers 2
# The code runs from a snapshot of the committed tree (git archive HEAD), at the lowest CPU priority (nice 19), one
# thread a run. If OUT_DIR has no records yet and OUT_DIR/../records.tar.xz or docs/results/NAME/records.tar.xz
# (NAME = OUT_DIR's folder name) exists, that archive is unpacked first, so a published or packed-at-a-stop study
# resumes where it stopped: only missing runs are computed.
#   WORKERS=1 (default 2), DEVICE=cuda (default cpu), ANDI_DATA_ROOT (default ../shared/data beside the checkout).
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 PROTOCOL OUT_DIR [andi-bench run options...]" >&2
    exit 2
fi
protocol="$1"
out="$2"
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
for archive in "$(dirname "$out")/records.tar.xz" "$root/docs/results/$(basename "$out")/records.tar.xz"; do
    if [[ -f "$archive" ]] && ! ls "$out"/*.json >/dev/null 2>&1; then
        echo "unpacking $archive into $out"
        tar -x -f "$archive" -C "$out"
    fi
done
snapshot="$(mktemp -d)"
trap 'rm -rf "$snapshot"' EXIT
git -C "$root" archive HEAD src | tar -x -C "$snapshot"
data="${ANDI_DATA_ROOT:-$root/../shared/data}"
echo "code: $(git -C "$root" rev-parse --short HEAD) (snapshot in $snapshot); $protocol -> $out" \
    "($(find "$out" -maxdepth 1 -name '*.json' ! -name 'manifest-*' | wc -l) records so far)"
PYTHONPATH="$snapshot/src" nice -n 19 python -m andi.bench run --protocol "$protocol" --workers "${WORKERS:-2}" \
    --threads 1 --device "${DEVICE:-cpu}" --data-root "$data" --out "$out" --no-progress "$@"
