#!/usr/bin/env bash
# Create .venv and install fracture_d2 with everything it needs, from package registries only.
#
#   bash tools/setup_env.sh                 # what `make demo` / `make test` run when needed
#   D2_FROM_SOURCE=1 bash tools/setup_env.sh  # build upstream detectron2 from GitHub instead
#
# Environment: PYTHON (default python3, 3.11), VENV (default .venv), TORCH_SPEC (default the
# pins below), WHEELHOUSE (a folder of wheels for offline installs; see `make wheelhouse`),
# VENV_SYSTEM_SITE_PACKAGES=1 (let the venv see an already installed torch).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
D2_WHEEL_VERSION=0.7.2
PIP_OPTS=(--disable-pip-version-check --no-input -q)
if [[ -n "${WHEELHOUSE:-}" ]]; then PIP_OPTS+=(--no-index --find-links "$WHEELHOUSE"); fi

step() { printf '\n[setup] %s\n' "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV with $($PYTHON --version 2>&1)"
  # VENV_SYSTEM_SITE_PACKAGES=1: see a system-wide torch (e.g. a GPU server's own build).
  "$PYTHON" -m venv ${VENV_SYSTEM_SITE_PACKAGES:+--system-site-packages} "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip)

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  step "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" install "${PIP_OPTS[@]}" $TORCH_SPEC
fi

step "installing requirements.txt"
"${PIP[@]}" install "${PIP_OPTS[@]}" -r requirements.txt

if "$PY" -c "import detectron2" 2>/dev/null; then
  step "detectron2 already installed ($("$PY" -c 'import detectron2; print(detectron2.__version__)')); leaving it alone"
elif [[ "${D2_FROM_SOURCE:-0}" == "1" ]]; then
  step "building detectron2 from source (needs internet and a compiler)"
  "${PIP[@]}" install "${PIP_OPTS[@]}" --no-build-isolation \
    "git+https://github.com/facebookresearch/detectron2.git"
else
  # PyPI has upstream detectron2's Python package as sal-detectron2, wheel tagged cp310 only.
  # Its code is pure Python apart from _C (which is then never loaded: detectron2 falls back to
  # torchvision ops), so it is installed under a py3-none-any name on any Python 3.
  step "installing detectron2 (sal-detectron2==$D2_WHEEL_VERSION, retagged py3-none-any)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if [[ -n "${WHEELHOUSE:-}" ]]; then
    cp "$WHEELHOUSE"/sal_detectron2-"$D2_WHEEL_VERSION"-*.whl "$tmp/"
  else
    "${PIP[@]}" download "${PIP_OPTS[@]}" "sal-detectron2==$D2_WHEEL_VERSION" --no-deps \
      --only-binary=:all: --python-version 3.10 -d "$tmp"
  fi
  src=$(ls "$tmp"/sal_detectron2-"$D2_WHEEL_VERSION"-*.whl | head -n 1)
  dst="$tmp/sal_detectron2-$D2_WHEEL_VERSION-py3-none-any.whl"
  [[ "$src" == "$dst" ]] || mv "$src" "$dst"
  "${PIP[@]}" install "${PIP_OPTS[@]}" "$dst"
fi

step "installing fracture_d2 (editable)"
"${PIP[@]}" install "${PIP_OPTS[@]}" --no-deps --no-build-isolation -e .
"$PY" -c "import detectron2, torch, fracture_d2; print('[setup] ok: torch', torch.__version__, \
'| detectron2', detectron2.__version__, '| fracture_d2', fracture_d2.__version__)"
