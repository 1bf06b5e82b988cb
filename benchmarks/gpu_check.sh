#!/usr/bin/env bash
# Issue 9's GPU check in one command: the step-throughput benchmark (vanilla KD and AD-KD, cached and live,
# MRPC, batch 128 and 32, bf16 on CUDA), the host-overhead mode on the same machine, a short `kdkit distill`
# of both losses, and KD with --compile; the key figures are printed last. Under 4 minutes on an H100/H200 with
# the kit's setup (about 40 s): every step has a timeout inside a 190 s budget, the benchmark writes its JSON
# after each measured group, and what finished is reported whatever happens later.
#
#   on the GPU machine (carry .devkit, built here by `bash ../shared/gpu/build-kit.sh`):
#       bash .devkit/setup.sh && source /tmp/kdkit-env.sh && bash benchmarks/gpu_check.sh
#   anywhere, at tiny sizes (a CPU is fine; 3-6 minutes on 2 busy cores, timeouts x4):
#       KDKIT_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh
#
# Results: $OUT/gpu-check if OUT is set, else benchmarks/results/gpu-check (step_*.json, the runs' run.json,
# one log per step, summary.txt); models, caches and checkpoints stay in $KDKIT_GPU_CHECK_WORK
# (default /tmp/kdkit-gpu-check). KDKIT_GPU_CHECK_BUDGET overrides the 230 s budget;
# KDKIT_GPU_CHECK_COMPILE=0 skips the --compile step (=1 runs it at tiny sizes too). KDKIT_GPU_CHECK_QUICK=1
# keeps what the issue-9 targets need (MRPC batch 128, kd and adkd cached) and the short distill of both losses,
# skips the host-overhead mode and --compile, and budgets 120 s (benchmarks/gpu_session.sh runs it so).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f /tmp/kdkit-env.sh ] && source /tmp/kdkit-env.sh
py=${PYTHON:-python3}
out=${OUT:-benchmarks/results}/gpu-check
work=${KDKIT_GPU_CHECK_WORK:-/tmp/kdkit-gpu-check}
rm -rf "$work/teacher" "$work/teacher.partial" "$work"/run-* && mkdir -p "$out" "$work"
export KDKIT_HOME=${KDKIT_HOME:-$work/home} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
tiny=${KDKIT_GPU_CHECK_TINY:-0}
quick=${KDKIT_GPU_CHECK_QUICK:-0}
scale=1 && [ "$tiny" = 1 ] && scale=4  # a busy CPU runs the tiny sizes slower than a GPU runs the real ones
full_budget=190 && [ "$quick" = 1 ] && full_budget=120
budget=${KDKIT_GPU_CHECK_BUDGET:-$((full_budget * scale))}
start=$(date +%s)
data=()
[ -n "${KDKIT_GLUE_DIR:-}" ] || data=(--data-dir ../shared/data/glue)

if [ "$tiny" = 1 ]; then
  real=(--tasks mrpc --batch-sizes 8 --variants kd adkd --steps 3 --warmup 1 --samples 24)
  host=(--tasks mrpc --batch-sizes 8 --variants kd adkd --steps 8 --warmup 2 --samples 64)
  compiled=(--tasks mrpc --batch-sizes 8 --variants kd --steps 3 --warmup 2 --samples 40)
  size=(--max-train-samples 48 --max-eval-samples 16)
  teach=(--epochs 1 --batch-size 16) run=(--epochs 1 --batch-size 16)
  compile_default=0
else
  real=(--tasks mrpc --batch-sizes 128 32 --variants kd adkd kd-live adkd-live --steps 40 --warmup 10)
  host=(--tasks mrpc --batch-sizes 128 32 --variants kd adkd --steps 150 --warmup 20)
  compiled=(--tasks mrpc --batch-sizes 128 --variants kd --steps 40 --warmup 25)
  size=()
  teach=(--epochs 1 --batch-size 64) run=(--epochs 2 --batch-size 128)
  compile_default=1
fi
if [ "$quick" = 1 ]; then
  [ "$tiny" = 1 ] || real=(--tasks mrpc --batch-sizes 128 --variants kd adkd --steps 40 --warmup 10)
  compile_default=0
fi

# step NAME SECONDS MINIMUM COMMAND...: run with a timeout capped by what is left of the budget (skipped when
# under MINIMUM seconds are left); log to $out/NAME.log
step() {
  local name=$1 want=$(($2 * scale)) least=$(($3 * scale)) left
  shift 3
  left=$((budget - ($(date +%s) - start)))
  [ "$want" -gt "$left" ] && want=$left
  if [ "$want" -lt "$least" ]; then echo "[gpu-check] $name skipped: ${left}s left" | tee -a "$out/summary.txt"; return; fi
  echo "[gpu-check] $name (timeout ${want}s)"
  timeout --kill-after=5 "$want" "$@" >"$out/$name.log" 2>&1
  local code=$?
  echo "[gpu-check] $name: exit $code after $(($(date +%s) - start))s" | tee -a "$out/summary.txt"
  [ "$code" = 0 ] || tail -5 "$out/$name.log"
}

: >"$out/summary.txt"
$py -c "import torch, kdkit; print('[gpu-check]', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA: CPU', 'torch', torch.__version__, 'kdkit', kdkit.__version__, kdkit.__file__)" | tee -a "$out/summary.txt"
step step_real 75 30 $py benchmarks/step_throughput.py --mode real "${real[@]}" "${data[@]}" --label gpu-check --output "$out/step_real.json"
step teacher 30 15 kdkit finetune --task mrpc "${data[@]}" "${size[@]}" "${teach[@]}" --output "$work/teacher" --overwrite --quiet
for loss in kd adkd; do
  preset=() && [ $loss = adkd ] && preset=(--preset paper)
  step "distill_$loss" 35 15 kdkit distill --plugin $loss "${preset[@]}" --task mrpc --teacher "$work/teacher" "${data[@]}" "${size[@]}" "${run[@]}" --output "$work/run-$loss" --overwrite --quiet
  [ -f "$work/run-$loss/run.json" ] && cp "$work/run-$loss/run.json" "$out/run-$loss.json"
done
[ "$quick" = 1 ] || step step_host 20 10 $py benchmarks/step_throughput.py --mode host "${host[@]}" "${data[@]}" --label gpu-check --output "$out/step_host.json"
if [ "${KDKIT_GPU_CHECK_COMPILE:-$compile_default}" = 1 ]; then
  step step_compile 80 40 $py benchmarks/step_throughput.py --mode real "${compiled[@]}" "${data[@]}" --set compile=true --pad-to-multiple-of 16 --label compile --output "$out/step_compile.json"
fi

$py - "$out" <<'PY' | tee -a "$out/summary.txt"
"""The key figures, from whatever finished."""
import json, sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


print("\n== issue 9 GPU check: key figures ==")
for label, name in (("real model", "step_real.json"), ("host overhead", "step_host.json"), ("--compile", "step_compile.json")):
    result = load(name)
    if result is None:
        print(f"{label}: no result")
        continue
    m = result["machine"]
    print(f"{label}: {m.get('gpu') or m['cpu']} ({result['runs'][0]['device']}), load {result['load_average_at_start'][0]:.1f}")
    for run in result["runs"]:
        kd = run["variants"].get("kd")
        for variant, v in run["variants"].items():
            ratio = v.get("ratio_to_kd_of_medians")
            rate = f", {kd['examples_per_s'] / v['examples_per_s']:.2f}x kd's time per example" if kd and variant != "kd" else ""
            print(f"  {run['task']} b{run['batch_size']} {variant:10s} {v['examples_per_s']:9.0f} ex/s  median step {v['median_step_ms']:7.2f} ms"
                  f" (host CPU {v['median_cpu_ms']:.2f} ms)" + (f"  step {ratio:.2f}x kd" if ratio else "") + rate)
for loss in ("kd", "adkd"):
    run = out / f"run-{loss}.json"
    if run.is_file():
        s = json.loads(run.read_text())
        t = s["train"]
        print(f"kdkit distill {loss}: {t['steps']} steps in {t['wall_time_s']} s (eval + checkpoints included): "
              f"{t['examples_per_second']} ex/s, {s['environment']['device']} {s['environment']['precision']}, "
              f"{s['main_metric']} {s['metrics'].get(s['main_metric'], float('nan')):.4f}")
    else:
        print(f"kdkit distill {loss}: no run")
real = load("step_real.json")
if real:
    b128 = [r for r in real["runs"] if r["batch_size"] == 128]
    if b128 and {"kd", "adkd"} <= set(b128[0]["variants"]):
        kd, adkd = b128[0]["variants"]["kd"], b128[0]["variants"]["adkd"]
        ratio = kd["examples_per_s"] / adkd["examples_per_s"]
        print(f"TARGET vanilla KD >= 15,000 ex/s (MRPC, batch 128): {kd['examples_per_s']:.0f} -> {'met' if kd['examples_per_s'] >= 15000 else 'NOT met'}")
        print(f"TARGET AD-KD step <= 1.3x KD step (MRPC, batch 128, cached): {ratio:.2f}x -> {'met' if ratio <= 1.3 else 'NOT met'}")
PY
echo "[gpu-check] done in $(($(date +%s) - start))s; results in $out"
