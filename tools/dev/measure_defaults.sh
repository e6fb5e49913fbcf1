#!/usr/bin/env bash
# CPU speed of the project's defaults vs stock Detectron2 on the demo model (docs/speed.md "Defaults")
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
B="tools/benchmark.py --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml"
W="MODEL.WEIGHTS output/demo/model_final.pth"
O=output/benchmark/defaults
mkdir -p $O
I="--skip-train --eval-dataset mura_synthetic_test_all --infer-images 16 --rounds 3 --batch-size 8"
"${PYTHON:-.venv/bin/python}" $B $I --out $O/infer_default.json $W > $O/infer_default.log 2>&1
"${PYTHON:-.venv/bin/python}" $B $I --out $O/infer_batched_only.json $W FRACTURE.FAST.MATRIX_NMS False > $O/infer_batched_only.log 2>&1
"${PYTHON:-.venv/bin/python}" $B $I --out $O/infer_none.json $W FRACTURE.FAST.BATCHED_HEADS False FRACTURE.FAST.MATRIX_NMS False > $O/infer_none.log 2>&1
T="--skip-infer --train-iters 10 --rounds 3"
"${PYTHON:-.venv/bin/python}" $B $T --out $O/train_default.json > $O/train_default.log 2>&1
"${PYTHON:-.venv/bin/python}" $B $T --out $O/train_batched.json FRACTURE.FAST.BATCHED_HEADS True > $O/train_batched.log 2>&1
echo done > $O/DONE
