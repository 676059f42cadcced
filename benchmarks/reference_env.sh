#!/usr/bin/env bash
# Create the reference environment the benchmarks compare against: the book's own stack,
# d2l 0.17.6 with torch 2.14.1 + torchvision 0.29.1. It is never a dependency of the package
# or of its tests, only of the "reference" side of benchmarks/*.py.
#
#   benchmarks/reference_env.sh            # creates .refenv at the repository root
#   REFENV=/some/dir benchmarks/reference_env.sh
#
# Then pass --refenv "$REFENV" to a benchmark (or export REFENV).
set -euo pipefail
cd "$(dirname "$0")/.."
REFENV="${REFENV:-.refenv}"
PYTHON="${PYTHON:-python3}"

if [ -x "$REFENV/bin/python" ] && "$REFENV/bin/python" -c "import d2l, torchvision" 2>/dev/null; then
    echo "reference environment already in $REFENV"
    exit 0
fi

"$PYTHON" -m venv "$REFENV"
"$REFENV/bin/python" -m pip install --quiet --upgrade pip
# A separate environment: torchvision 0.29.1 needs exactly torch 2.14.1, which pip takes from
# the index (a CUDA build, ~5.5 GB); it does not import beside the project's torch 2.13.0.
"$REFENV/bin/python" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
# d2l 0.17.6 pins numpy/matplotlib/torch versions that no longer install on current Pythons;
# its code runs with today's versions, so install it without its pins and add what it imports.
"$REFENV/bin/python" -m pip install --quiet --no-deps "d2l==0.17.6"
"$REFENV/bin/python" -m pip install --quiet matplotlib pandas requests ipython matplotlib-inline
"$REFENV/bin/python" -c "import d2l, torch, torchvision; print('reference environment in', '$REFENV:', 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
