#!/usr/bin/env bash
# One-shot GPU evidence run: everything the project needs measured on one GPU, in one results folder.
#
#   scripts/gpu_evidence.sh [--device cuda] [--size full|smoke] [--data-root DIR] [--out DIR] [--budget SECONDS]
#
# Runs from the source tree (PYTHONPATH=src: no install, no network), reads data from --data-root (FashionMNIST and
# TinyShakespeare, 31 MB; CIFAR-10 is left out, so is the `cifar` task) and writes, in order of importance:
#   1. pytest tests/gpu                        the CUDA paths (fused/Triton/compiled) against the reference loop
#   2. replay-v7 --size full                   the author's v7 GPT experiment (6 runs; docs/results/replay-v7)
#   3. study-gpt-full --size full              the GPT claim at the paper's size (docs/results/gpt-paper-size)
#   4. andi-bench step 32x4096^2 gpt124m       optimizer-step timings, GB/s against the HBM peak
#   5. replay saddle,gpt --size full           the paper's protocol, 8 runs packed on each GPU
#   6. fair gpt --size full                    andi / andi-hybrid / adamw / muon, 3 reporting seeds, packed
# Each part gets its share of --budget (default 420 s = 7 minutes) and is stopped at it; sweeps keep the records they
# finished, and the summary says which part stopped where. Everything ends up in two files under --out:
# summary.md (what ran, for how long, with which result) and evidence.tar.gz (logs, records, reports, step tables).
# `--device cpu --size smoke` runs the same script end to end in about a minute (CI does, tests/test_gpu_evidence.py).
set -uo pipefail

device=cuda size=full data_root=data out=gpu-evidence budget=420
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --data-root) data_root="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_evidence.sh: error: unknown argument $1; see --help" >&2; exit 2 ;;
    esac
done
case "$size" in full|smoke) ;; *) echo "gpu_evidence.sh: error: --size must be full or smoke" >&2; exit 2 ;; esac

repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 ANDI_DATA_DOWNLOAD=0 CI=true
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$out/evidence"
rm -rf "$work" && mkdir -p "$work/logs"
summary="$out/summary.md"
start=$(date +%s)

if [[ "$device" == cpu ]]; then
    pack=(--workers 2 --threads 1)
    gpu_tests=(-m gpu)  # on CPU every gpu test skips; the compile tests already run in the normal suite
    shapes=(tiny) step_opts=(--repeats 3 --warmup 1)
else
    pack=(--workers-per-gpu 8)
    gpu_tests=()
    shapes=(32x4096^2 gpt124m) step_opts=()
fi

rows=()
part() {  # part NAME SHARE_OF_BUDGET(%) COMMAND...: run with a time limit, log it, add a summary row
    local name="$1" share="$2"
    shift 2
    local limit=$((budget * share / 100)) t0 t1 rc status
    t0=$(date +%s)
    timeout --signal=INT --kill-after=20 "$limit" "$@" >"$work/logs/$name.log" 2>&1
    rc=$?
    t1=$(date +%s)
    case $rc in
        0) status=ok ;;
        124|130|137) status="stopped at its ${limit} s limit (records so far are kept)" ;;
        *) status="failed (exit $rc; see logs/$name.log)" ;;
    esac
    rows+=("| $name | $((t1 - t0)) s | $status | \`$*\` |")
    echo "gpu_evidence: $name: $status ($((t1 - t0)) s)"
}

python - >"$work/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu")
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton not installed")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi >>"$work/env.txt" 2>&1

part gpu-tests 15 python -m pytest -q -p no:cacheprovider "${gpu_tests[@]}" "$repo/tests/gpu"
part replay-v7 15 python -m andi.bench run --protocol replay-v7 --size "$size" --device "$device" "${pack[@]}" \
    --data-root "$data_root" --out "$work/replay-v7"
part gpt-paper-size 30 python -m andi.bench run --protocol study-gpt-full --size "$size" --device "$device" \
    "${pack[@]}" --data-root "$data_root" --out "$work/gpt-paper-size"
part step-bench 10 python -m andi.bench step --device "$device" --shapes "${shapes[@]}" "${step_opts[@]}" \
    --out "$work/step" --no-plot --quiet
part replay 15 python -m andi.bench run --protocol replay --task saddle,gpt --size "$size" --device "$device" \
    "${pack[@]}" --data-root "$data_root" --out "$work/replay"
part fair-gpt 15 python -m andi.bench run --protocol fair --task gpt --optimizers andi,andi-hybrid,adamw,muon \
    --reporting-seeds 1001,1002,1003 --size "$size" --device "$device" "${pack[@]}" --data-root "$data_root" \
    --out "$work/fair-gpt"

{
    echo "# GPU evidence run"
    echo
    echo "Command: \`scripts/gpu_evidence.sh --device $device --size $size --budget $budget\`, $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "$(($(date +%s) - start)) s in all. Environment:"
    echo
    echo '```'
    head -n 3 "$work/env.txt"
    echo '```'
    echo
    echo "| part | wall | result | command |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Reports: evidence/{replay-v7,gpt-paper-size,replay,fair-gpt}/report.md; step timings:"
    echo "evidence/step/step_bench.md"
    echo "(all inside evidence.tar.gz). Re-run \`andi-bench report DIR\` on an unpacked folder to regenerate a report."
} >"$summary"

tar -czf "$out/evidence.tar.gz" -C "$out" evidence && rm -rf "$work"
echo "gpu_evidence: wrote $summary and $out/evidence.tar.gz"
