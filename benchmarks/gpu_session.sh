#!/usr/bin/env bash
# Issue 9 on the GPU machine in one device call: the GPU check (the throughput targets and a short distill of
# both losses), then as much of the paper-budget GLUE study as fits (benchmarks/gpu_study.py), all packed into
# $OUT: results.tar.gz (JSONs, run.json files, logs), summary.txt and session.log; the summary is printed last.
#
#   device call: carry [".devkit"] (bash ../shared/gpu/build-kit.sh), timeout_s 575, command
#       export KDKIT_SESSION_T0=$(date +%s); bash .devkit/setup.sh && source /tmp/kdkit-env.sh && bash benchmarks/gpu_session.sh
#   tiny sizes on any machine (a CPU is fine; ~10-15 minutes on 2 busy cores):
#       KDKIT_GPU_SESSION_TINY=1 PYTHON=python bash benchmarks/gpu_session.sh
#   then, here:  mkdir -p R && tar xzf results.tar.gz -C R && python benchmarks/gpu_study.py report --results R/results
#
# Time is planned from KDKIT_SESSION_T0 (when the device command began; default: 45 s before this script, the
# kit's setup) to KDKIT_SESSION_SECONDS after it (default 555, for a timeout_s of 575): the GPU check gets
# KDKIT_GPU_CHECK_BUDGET (120 s), the study everything up to 20 s before the end (it launches only runs
# expected to finish, drops runs that cannot, kills what is left at its deadline and keeps what finished),
# then summary and packing. Other knobs: KDKIT_GPU_STUDY_JOBS (12 processes at a time), KDKIT_GPU_MPS
# (auto: start CUDA MPS for the study if nvidia-cuda-mps-control exists and a probe passes; 0: never),
# KDKIT_GPU_STUDY_ARGS (more `gpu_study.py run` flags, e.g. "--tasks mrpc,cola --seeds 1,2").
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f /tmp/kdkit-env.sh ] && source /tmp/kdkit-env.sh
py=${PYTHON:-python3}
now() { date +%s; }
tiny=${KDKIT_GPU_SESSION_TINY:-0}
t0=${KDKIT_SESSION_T0:-$(($(now) - 45))}
default_total=555 && [ "$tiny" = 1 ] && default_total=1500
total=${KDKIT_SESSION_SECONDS:-$default_total}
out=${OUT:-benchmarks/results/gpu-session}
root=$(mktemp -d /tmp/kdkit-session.XXXXXX)
stage=$root/results
mkdir -p "$stage/session" "$out"
log=$out/session.log
: >"$log"
say() { echo "[session] +$(($(now) - t0))s $*" | tee -a "$log"; }
mark() { echo "$1 $(($(now) - t0))" >>"$stage/session/timeline.txt"; say "$1"; }
left() { echo $((t0 + total - $(now))); }
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mark start
echo "t0 $t0 total $total tiny $tiny" >>"$stage/session/timeline.txt"

# -- where the study works: tmpfs when it has room (checkpoints of ~12 runs at once), else /tmp ----------------
work=/tmp/kdkit-study
free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
[ "$tiny" != 1 ] && [ "${free_kib:-0}" -gt $((24 * 1024 * 1024)) ] && work=/dev/shm/kdkit-study
[ "$tiny" = 1 ] && work=$root/work
rm -rf "$work" && mkdir -p "$work"
export HF_DATASETS_CACHE=$work/hf-datasets

# -- the machine ---------------------------------------------------------------------------------------------
timeout 60 "$py" benchmarks/gpu_report.py env "$stage/session/env.json" "$work" 2>&1 | tee -a "$log"
sampler=
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi >"$stage/session/nvidia-smi.txt" 2>&1
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,noheader -l 2 \
    >"$stage/session/util.csv" 2>/dev/null &
  sampler=$!
fi

# -- 1. the GPU check: step throughput (MRPC, batch 128, kd/adkd cached), short distill of both losses -----------
mark gpu-check
check_budget=${KDKIT_GPU_CHECK_BUDGET:-120}
[ "$tiny" = 1 ] && check_budget=${KDKIT_GPU_CHECK_BUDGET:-400}
KDKIT_GPU_CHECK_QUICK=1 KDKIT_GPU_CHECK_TINY=$tiny KDKIT_GPU_CHECK_BUDGET=$check_budget OUT=$stage \
  KDKIT_GPU_CHECK_WORK=$work/gpu-check timeout -k 5 $((check_budget + 30)) bash benchmarks/gpu_check.sh 2>&1 | tee -a "$log"
rm -rf "$work/gpu-check"
tar czf "$out/results.tar.gz" -C "$root" results  # a first pack: the check's figures survive a later kill

# -- 2. CUDA MPS for the study (many small processes on one card), if it starts and a probe passes ---------------
mps="off"
if [ "$tiny" != 1 ] && [ "${KDKIT_GPU_MPS:-auto}" != 0 ] && command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/kdkit-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/kdkit-mps/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  probe="import torch; x = torch.ones(4, device='cuda'); assert float((x * 2).sum()) == 8.0; print('MPS probe ok')"
  if timeout 10 nvidia-cuda-mps-control -d && timeout 30 "$py" -c "$probe" 2>&1 | tee -a "$log"; then
    mps="on"
  else
    echo quit | timeout 5 nvidia-cuda-mps-control >/dev/null 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    mps="off (MPS did not start or its probe failed)"
  fi
elif [ "$tiny" != 1 ] && [ "${KDKIT_GPU_MPS:-auto}" != 0 ]; then
  mps="off (no nvidia-cuda-mps-control)"
fi
echo "$mps" >"$stage/session/mps.txt"
say "MPS: $mps"

# -- 3. the study, until 20 s before the end -----------------------------------------------------------------
mark study
deadline=$((t0 + total - 20))
jobs=${KDKIT_GPU_STUDY_JOBS:-12}
study=(--work "$work" --out "$stage/study" --deadline "$deadline" --jobs "$jobs")
if [ "$tiny" = 1 ]; then
  study+=(--tiny --seeds 1,2 --jobs "${KDKIT_GPU_STUDY_JOBS:-2}" --prior teacher=1.5,ce=1,kd=1.2,adkd=2)
  [ -n "${KDKIT_GLUE_DIR:-}" ] || study+=(--data-dir ../shared/data/glue)
fi
# shellcheck disable=SC2206
study+=(${KDKIT_GPU_STUDY_ARGS:-})
if [ "$(left)" -gt 60 ]; then
  timeout -k 5 $(($(left) - 8)) "$py" benchmarks/gpu_study.py run "${study[@]}" 2>&1 | tee -a "$log"
else
  say "study skipped: $(left) s left"
fi

# -- 4. --compile, only when the study ended early ------------------------------------------------------------
if [ "$tiny" != 1 ] && [ "$(left)" -gt 110 ]; then
  mark compile
  timeout -k 5 $(($(left) - 25)) "$py" benchmarks/step_throughput.py --mode real --tasks mrpc --batch-sizes 128 \
    --variants kd --steps 40 --warmup 25 --set compile=true --pad-to-multiple-of 16 --label compile \
    --output "$stage/gpu-check/step_compile.json" >"$stage/gpu-check/step_compile.log" 2>&1
  say "compile step: exit $?"
fi

# -- 5. pack, then the summary last --------------------------------------------------------------------------
mark pack
[ -n "$sampler" ] && kill "$sampler" 2>/dev/null
[ "$mps" = on ] && { echo quit | timeout 5 nvidia-cuda-mps-control >/dev/null 2>&1; }
du -sh "$work" 2>/dev/null | tee -a "$log"
timeout 30 "$py" benchmarks/gpu_study.py summary --results "$stage" >"$stage/summary.txt" 2>&1
cp "$stage/summary.txt" "$out/summary.txt"
cp "$log" "$stage/session/session.log"
tar czf "$out/results.tar.gz" -C "$root" results
if [ "$(stat -c %s "$out/results.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then  # 16 MiB per returned file
  say "results.tar.gz over 15 MiB: packed again without the logs"
  tar czf "$out/results.tar.gz" -C "$root" --exclude='*.log' results
fi
mark done
say "returned: $(ls "$out" | tr '\n' ' ')($(du -sh "$out/results.tar.gz" | cut -f1) packed)"
cat "$out/summary.txt"
