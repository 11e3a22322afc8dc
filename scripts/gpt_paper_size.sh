#!/usr/bin/env bash
# The two studies of the GPT claim at the paper's size (docs/results/gpt-paper-size/claim.md), run or resumed:
#   1. replay-v7       -> docs/results/replay-v7/records       (6 runs)
#   2. study-gpt-full  -> docs/results/gpt-paper-size/records  (about 27-33 runs)
# Each run takes about 25 minutes on one CPU thread, so this is meant for the background, for hours, across sessions:
# every finished run is a JSON record in those folders (commit them whenever you stop); a new invocation computes only
# what is missing. Both studies are finished and published (scripts/publish_results.sh packed each folder into
# records.tar.xz beside its report.md): a new invocation unpacks that archive into the folder first, so it reuses
# every published run (a newer code or config computes only what differs). The code runs from a snapshot of the
# committed tree (git archive HEAD into a temporary folder), so editing the working tree while it runs changes
# nothing; it runs at the lowest CPU priority (nice 19), so tests and builds beside it keep their speed.
#
#   scripts/gpt_paper_size.sh                 # both studies, 2 workers
#   WORKERS=1 scripts/gpt_paper_size.sh       # leave a core free
#   STUDIES=study-gpt-full scripts/gpt_paper_size.sh
#   DEVICE=cuda scripts/gpt_paper_size.sh     # on a GPU (see scripts/gpu_evidence.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

out_of() {
    case "$1" in
        replay-v7) echo "$root/docs/results/replay-v7/records" ;;
        study-gpt-full) echo "$root/docs/results/gpt-paper-size/records" ;;
        *) echo "unknown study $1" >&2; exit 2 ;;
    esac
}

# background_sweep.sh does the rest: the snapshot of HEAD, nice 19, one thread a run, WORKERS/DEVICE/ANDI_DATA_ROOT,
# and unpacking the published records.tar.xz into an empty records folder first.
for study in ${STUDIES:-replay-v7 study-gpt-full}; do
    "$root/scripts/background_sweep.sh" "$study" "$(out_of "$study")"
done
