#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go (CI has none). Run from the repository root on a
# machine with torch, numpy, matplotlib, safetensors, tqdm, pillow and pytest installed:
#
#     SOFTMAX_REGRESSION_DATA=/path/to/fashion-mnist OUT=/tmp/gpu bash benchmarks/gpu_check.sh
#
# 1. the test suite with device "auto" meaning the GPU (the notebook tests and the d2l wheel
#    comparison need packages a bare GPU image lacks, so they are left to CPU runs), then
#    the trainer against the book's own code on cuda, given the d2l wheel ($D2L_ORACLE_DIR);
# 2. the book's recipe on cuda and on cpu, both engines, whole process timed;
# 3. the best-linear recipe on cuda over seeds 0,1,2;
# 4. torch.distributed: the multi-process tests (gloo on the loopback); with 2 or more GPUs
#    the book's recipe data-parallel on NCCL, one GPU per rank, beside one GPU; with one
#    GPU, the one-line refusal of two ranks on it; then bench_distributed.py on the CPUs;
# 5. the scikit-learn estimator (needs scikit-learn) on device "auto" beside "cpu": time and
#    objective of one fit, and the estimator tests (without a GPU both run on the CPU).
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

timeout 300 python3 -m pytest -q -p no:cacheprovider --ignore=tests/test_d2l_chapters.py \
    --ignore=tests/test_d2l_oracle.py --ignore=tests/test_distributed.py \
    --ignore=tests/test_distributed_cli.py 2>&1 | tee "$OUT/pytest.log" | tail -25

# The trainer against d2l 0.17.6's own train_epoch_ch3 on cuda: needs only the book's wheel,
# which `make setup` downloads into .venv/d2l-oracle (copy that folder along).
export D2L_ORACLE_DIR=${D2L_ORACLE_DIR:-$PWD/.venv/d2l-oracle}
if ls "$D2L_ORACLE_DIR"/d2l-0.17.6-*.whl >/dev/null 2>&1; then
    timeout 300 python3 -m pytest -q -ra -p no:cacheprovider tests/test_d2l_oracle.py \
        -k "engine" 2>&1 | tee "$OUT/pytest-oracle.log" | tail -8
else
    echo "no d2l 0.17.6 wheel in $D2L_ORACLE_DIR: the trainer-against-the-book checks were not run"
fi

TIMEFORMAT="%R s"
for engine in fast autograd; do
    for device in cuda cpu; do
        echo "book recipe, engine $engine, device $device:"
        time python3 -m softmax_regression train --device "$device" --engine "$engine" \
            --quiet --no-plots --out "$OUT/book-$engine-$device" | tail -2
    done
done

python3 benchmarks/bench_best_linear.py --seeds 0,1,2 --no-process 2>&1 | tail -8

export GLOO_SOCKET_IFNAME=lo
timeout 900 python3 -m pytest -q -p no:cacheprovider tests/test_distributed.py \
    tests/test_distributed_cli.py 2>&1 | tee "$OUT/pytest-distributed.log" | tail -8
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
    echo "book recipe, $NGPU ranks on NCCL, one GPU each:"
    time torchrun --nproc-per-node "$NGPU" --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29533 \
        -m softmax_regression train --device cuda --quiet --no-plots --out "$OUT/ddp-cuda" | tail -2
    echo "the same on one GPU:"
    time python3 -m softmax_regression train --device cuda --quiet --no-plots \
        --out "$OUT/one-cuda" | tail -2
else
    python3 -m softmax_regression train --nproc 2 --device cuda --no-plots --out "$OUT/ddp-refused"
    echo "exit status $? (2 expected: two ranks, one GPU)"
fi
timeout 1200 python3 benchmarks/bench_distributed.py --repeats 2

if python3 -c "import sklearn" 2>/dev/null; then
    python3 - <<'PY' 2>&1 | tee "$OUT/sklearn.log"
import sys, time
sys.path.insert(0, "benchmarks")
import torch
from bench_sklearn import objective, synthetic
from softmax_regression.sklearn import LogisticRegression
X, y = synthetic(50_000, 512, 100, 0)
for device in ("auto", "cpu"):
    est = LogisticRegression(max_iter=1000, device=device)
    t = time.perf_counter()
    est.fit(X, y)
    s = time.perf_counter() - t
    where = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    print(f"estimator on {device} ({where}): {s:.2f} s, {int(est.n_iter_[0])} iterations, "
          f"objective {objective(est, X, y):.8g}")
if torch.cuda.is_available():  # the case grown: an ImageNet-size probe (a figure, not a target)
    X, y = synthetic(400_000, 1024, 1000, 1)
    est = LogisticRegression(max_iter=1000, device="cuda")
    t = time.perf_counter()
    est.fit(X, y)
    print(f"estimator on cuda, 400,000 x 1024, 1000 classes: {time.perf_counter() - t:.2f} s, "
          f"{int(est.n_iter_[0])} iterations")
PY
    timeout 600 python3 -m pytest -q -p no:cacheprovider tests/test_sklearn.py 2>&1 \
        | tee "$OUT/pytest-sklearn.log" | tail -4
else
    echo "scikit-learn is not installed: the estimator checks were not run"
fi
