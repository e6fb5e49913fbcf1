#!/usr/bin/env bash
# The GPU speed runs of tools/benchmark.py (stock Detectron2 vs the project, same process),
# one after another, each under its own time limit, then the markdown table.
#
#   bash tools/dev/benchmark_gpu.sh                        # results in output/benchmark/gpu/
#   WHEELS=wheelhouse/py3.12 OUT=/tmp/b bash tools/dev/benchmark_gpu.sh   # air-gapped machine
#
# WHEELS: a folder of wheels (`make wheelhouse PYV=...`) installed with --no-deps into a temp
# target first, for a machine whose Python already has torch but not detectron2 & co.
# RUNS: which runs, in order (default "matrix512 static512 graphs512 loader512 batched512 amp512
# fp32_512 amp800 compile512", about 24 minutes of limits; pick a few on a short lease): matrix512 = fp32
# with FRACTURE.FAST.BATCHED_HEADS and MATRIX_NMS, training and inference; static512 = inference
# with STATIC_INFERENCE; graphs512 = that compiled whole in CUDA-graph mode (COMPILE_BACKBONE,
# COMPILE_MODE reduce-overhead), inputs padded to one 1024 x 1024 size (STATIC_PAD 1024: one
# graph; batch 1 only, so one compile); batched512 = fp32 with BATCHED_HEADS; fracture512 = that with
# fracture-sized training proposals in both legs;
# compile512 = matrix512's training with the backbone compiled (COMPILE_DYNAMIC: one compile);
# graphstrain512 = that in CUDA-graph mode (reduce-overhead) at one training scale, short and
# long side <= 512 in both legs (few padded shapes: one graph each), logging skipped graphs;
# loader512 = both training data loaders alone, no model (img/s they deliver with WORKERS), and
# both per-parameter gradient clippings (norm, as the from-scratch configs) on R50-FPN's grads;
# WORKERS: loader workers;
# CONFIG, DEVICE, EXTRA_ARGS (options) and EXTRA_OPTS (KEY VALUE) for a dry run elsewhere, e.g.
#   DEVICE=cpu CONFIG=configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml \
#   EXTRA_ARGS="--patients 3 --train-iters 1 --rounds 1" EXTRA_OPTS="SOLVER.IMS_PER_BATCH 2" ...
# R50-FPN with BatchNorm from random init (speed does not depend on the weights), batch 16,
# synthetic MURA-sized images (longest side 512).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-output/benchmark/gpu}
RUNS=${RUNS:-matrix512 static512 graphs512 loader512 batched512 amp512 fp32_512 amp800 compile512}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [[ -n "${WHEELS:-}" ]]; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[[ $DEVICE == cuda* ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, detectron2, numpy; print('torch', torch.__version__, 'detectron2',
detectron2.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())" || exit 1

CFG=${CONFIG:-configs/MURA-Detection/faster_rcnn_R_50_FPN_3x.yaml}
# shellcheck disable=SC2206
COMMON=(--config-file "$CFG" --device "$DEVICE" --patients 60 --train-iters 20 --warmup 10
  --rounds 3 --batch-size 16 --infer-images 64 ${EXTRA_ARGS:-})
OPTS=(MODEL.RESNETS.NORM BN SOLVER.IMS_PER_BATCH 16 DATALOADER.NUM_WORKERS "${WORKERS:-12}"
  DATALOADER.PIN_MEMORY True DATALOADER.PERSISTENT_WORKERS True FRACTURE.FAST.METRICS_PERIOD 20)
AMP=(SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION bfloat16)
[[ $DEVICE == cuda* ]] || AMP=()  # Detectron2's AMPTrainer is CUDA-only
# shellcheck disable=SC2206
EXTRA=(${EXTRA_OPTS:-})

bench() {  # name, time limit (s), extra arguments
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$PY" tools/benchmark.py "${COMMON[@]}" --out "$OUT/$name.json" "$@" \
    "${EXTRA[@]}" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -E "round|Error|error:" "$OUT/$name.log" | grep -v Warning | tail -20
  [[ $rc == 0 ]] || echo "!! $name exited $rc (log: $OUT/$name.log)"
}

for run in $RUNS; do
  case $run in
    amp512) bench amp512 240 --profile 3 "${OPTS[@]}" "${AMP[@]}" ;;
    fp32_512) bench fp32_512 150 --skip-infer "${OPTS[@]}" ;;
    compile512) bench compile512 240 --skip-infer --warmup 15 --rounds 2 "${OPTS[@]}" \
      FRACTURE.FAST.BATCHED_HEADS True FRACTURE.FAST.MATRIX_NMS True \
      FRACTURE.FAST.COMPILE_BACKBONE True ;;
    graphstrain512) TORCH_LOGS=graph_breaks,recompiles,cudagraphs bench graphstrain512 240 \
      --skip-infer --warmup 15 --rounds 2 "${OPTS[@]}" FRACTURE.FAST.BATCHED_HEADS True \
      FRACTURE.FAST.MATRIX_NMS True FRACTURE.FAST.COMPILE_BACKBONE True \
      FRACTURE.FAST.COMPILE_MODE reduce-overhead "INPUT.MIN_SIZE_TRAIN" "(512,)" \
      INPUT.MAX_SIZE_TRAIN 512 ;;
    matrix512) bench matrix512 190 --rounds 2 --profile 2 "${OPTS[@]}" \
      FRACTURE.FAST.BATCHED_HEADS True FRACTURE.FAST.MATRIX_NMS True ;;
    batched512) bench batched512 150 --skip-infer --rounds 2 --profile 2 "${OPTS[@]}" \
      FRACTURE.FAST.BATCHED_HEADS True ;;
    fracture512) bench fracture512 150 --skip-infer --rounds 2 "${OPTS[@]}" \
      FRACTURE.FAST.BATCHED_HEADS True MODEL.RPN.PRE_NMS_TOPK_TRAIN 1000 \
      MODEL.RPN.POST_NMS_TOPK_TRAIN 500 MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE 128 ;;
    static512) bench static512 80 --skip-train --profile 8 "${OPTS[@]}" \
      FRACTURE.FAST.STATIC_INFERENCE True ;;
    graphs512) TORCH_LOGS=graph_breaks,recompiles,cudagraphs bench graphs512 280 --skip-train --batch-size 1 --profile 8 "${OPTS[@]}" \
      FRACTURE.FAST.STATIC_INFERENCE True \
      FRACTURE.FAST.COMPILE_BACKBONE True FRACTURE.FAST.COMPILE_MODE reduce-overhead \
      FRACTURE.FAST.STATIC_PAD 1024 ;;
    loader512) bench loader512 75 --skip-train --skip-infer --loader-batches 60 \
      --grad-clip-steps 50 "${OPTS[@]}" SOLVER.CLIP_GRADIENTS.CLIP_TYPE norm \
      SOLVER.CLIP_GRADIENTS.CLIP_VALUE 5.0 ;;
    amp800) bench amp800 150 --skip-infer --rounds 2 "${OPTS[@]}" "${AMP[@]}" \
      "INPUT.MIN_SIZE_TRAIN" "(800,)" INPUT.MAX_SIZE_TRAIN 1333 ;;
    *) echo "unknown run $run" ;;
  esac
done
shopt -s nullglob
jsons=("$OUT"/*.json)
((${#jsons[@]})) && "$PY" tools/dev/benchmark_table.py "${jsons[@]}"
