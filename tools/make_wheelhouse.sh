#!/usr/bin/env bash
# Download every wheel fracture_d2 needs beyond torch/torchvision, for another Python version
# and an x86_64 Linux machine without internet (air-gapped GPU servers are common in hospitals).
#
#   make wheelhouse PYV=3.12            # -> wheelhouse/py3.12/*.whl
#   WHEELHOUSE=wheelhouse/py3.12 PY=python3.12 VENV_SYSTEM_SITE_PACKAGES=1 make setup   # there
#
# The versions are those installed in this checkout's .venv (so both machines run the same
# code). Binary wheels come from PyPI for the target Python; packages published only as
# source (fvcore, antlr4-python3-runtime, ...) are pure Python and are built into py3 wheels
# here. detectron2 is the sal-detectron2 wheel retagged py3-none-any (see tools/setup_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PYV=${PYV:-3.12}
VENV=${VENV:-.venv}
OUT=${WHEELHOUSE_OUT:-wheelhouse/py$PYV}
PLATFORMS=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64 manylinux_2_34_x86_64 any)
SKIP='^(torch|torchvision|triton|nvidia-.*|cuda-.*|fracture[-_]d2|sal-detectron2|pip)=='
PIP=("$VENV/bin/python" -m pip)
mkdir -p "$OUT"

plat_args=()
for p in "${PLATFORMS[@]}"; do plat_args+=(--platform "$p"); done

echo "[wheelhouse] target: CPython $PYV, x86_64 Linux -> $OUT"
built=0 downloaded=0
while IFS= read -r req; do
  [[ -z "$req" || "$req" =~ $SKIP || "$req" == -e* || "$req" == *" @ "* ]] && continue
  if "${PIP[@]}" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version "$PYV" --implementation cp "${plat_args[@]}" -d "$OUT" "$req" 2>/dev/null; then
    downloaded=$((downloaded + 1))
  else
    # Source-only on PyPI: build a wheel here; fine for pure-Python packages (checked below).
    "${PIP[@]}" wheel -q --disable-pip-version-check --no-deps -w "$OUT" "$req"
    built=$((built + 1))
  fi
done < <("${PIP[@]}" freeze --all --disable-pip-version-check | LC_ALL=C sort)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PIP[@]}" download -q --disable-pip-version-check sal-detectron2==0.7.2 --no-deps \
  --only-binary=:all: --python-version 3.10 -d "$tmp"
cp "$tmp"/sal_detectron2-0.7.2-*.whl "$OUT/sal_detectron2-0.7.2-py3-none-any.whl"

# A wheel built here for a compiled package would only fit this Python: refuse it.
# (abi3 wheels, e.g. cp37-abi3, fit every later Python and are fine.)
tag="cp$(echo "$PYV" | tr -d .)"
bad=$(ls "$OUT" | grep -E -- "-cp3[0-9]+-cp3[0-9]+m?-" | grep -v -- "-$tag-$tag-" || true)
if [[ -n "$bad" ]]; then
  echo "[wheelhouse] error: wheels for the wrong Python in $OUT:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "[wheelhouse] $downloaded downloaded, $built built from source, + detectron2: $(ls "$OUT" | wc -l) wheels in $OUT"
