"""Data-parallel training under torchrun is the single-process run, up to float rounding.

Every job runs on this machine's loopback (gloo on 127.0.0.1, a free port), bounded in time,
and is ended as a process group (``distributed_helpers.py``). The runs are small (a few
thousand images, two or three epochs): what is tested is that the ranks compute the same
run, not the recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from distributed_helpers import WORKER, free_port, run, started, torchrun_args
from safetensors.torch import load_file

from softmax_regression.config import TrainConfig
from softmax_regression.data import load_fashion_mnist
from softmax_regression.distributed import local_indices, share
from softmax_regression.runs import artifacts
from softmax_regression.train import fit

# 21 full batches of 256 and a last batch of one image: with 2 or 3 ranks, some have nothing
# in the last batch and must still join its all-reduce. 1,000 test images split 334/333/333.
N_TRAIN, N_TEST = 256 * 21 + 1, 1000
CONFIGS = [  # on the CPU, where the workers run, on a machine with a GPU too
    {"epochs": 2, "engine": "fast", "device": "cpu"},
    {
        "epochs": 2,
        "engine": "autograd",
        "momentum": 0.5,
        "batch_size": 100,
        "seed": 3,
        "device": "cpu",
    },
]
JOB_TIMEOUT = 240  # seconds; a 3-rank job takes ~15 s on a quiet 2-core machine


@pytest.fixture(scope="module")
def data():
    train = load_fashion_mnist("train").subset(range(N_TRAIN))
    test = load_fashion_mnist("test").subset(range(N_TEST))
    return train, test


def launch(tmp: Path, nproc: int, configs, resume: Path | None = None) -> Path:
    out = tmp / f"ranks-{nproc}"
    args = torchrun_args(nproc, free_port())
    args += [str(WORKER), str(out), str(N_TRAIN), str(N_TEST), json.dumps(configs)]
    args += [str(resume)] if resume is not None else []
    done = run(args, JOB_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def read(out: Path, i: int):
    result = json.loads((out / str(i) / "result.json").read_text())
    return result, load_file(out / str(i) / "model.safetensors")


def assert_same_run(history, model, reference) -> None:
    """Loss within 1e-6 relative, the same accuracies, weights within float rounding."""
    ref = reference.history
    assert len(history["epochs"]) == len(ref)
    for got, want in zip(history["epochs"], ref, strict=True):
        assert got["train_loss"] == pytest.approx(want.train_loss, rel=1e-6, abs=0)
        assert got["train_acc"] == want.train_acc
        assert got["test_acc"] == want.test_acc
    for name, tensor in reference.model.state_dict().items():
        torch.testing.assert_close(model[name], tensor, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- shares


@pytest.mark.parametrize("n", [0, 1, 2, 5, 96, 256])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_shares_are_disjoint_contiguous_and_as_even_as_possible(n, size) -> None:
    bounds = [share(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_local_indices_cut_every_global_batch() -> None:
    perm = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    batch, size = 8, 3  # batches of 8, 8, 7: shares 3/3/2, 3/3/2, 3/2/2
    parts = [local_indices(perm, batch, size, r) for r in range(size)]
    assert [sizes for _, sizes in parts] == [[3, 3, 3], [3, 3, 2], [2, 2, 2]]
    for b, glob in enumerate(perm.split(batch)):
        pieces = [idx.split(sizes)[b] for idx, sizes in parts]
        assert torch.equal(torch.cat(pieces), glob)  # rank order = the global batch's order


# --------------------------------------------------------------------------- fit


def test_two_and_three_ranks_train_the_one_process_run(data, tmp_path) -> None:
    references = [fit(TrainConfig(**c), *data) for c in CONFIGS]
    for nproc in (2, 3):
        out = launch(tmp_path, nproc, CONFIGS)
        for i, reference in enumerate(references):
            result, model = read(out, i)
            assert result["world"] == nproc
            assert_same_run(result, model, reference)


def test_two_nodes_against_one_rendezvous_train_the_one_process_run(data, tmp_path) -> None:
    config = CONFIGS[0]
    reference = fit(TrainConfig(**config), *data)
    out, port = tmp_path / "nodes", free_port()
    worker = [str(WORKER), str(out), str(N_TRAIN), str(N_TEST), json.dumps([config])]
    nodes = [torchrun_args(1, port, nnodes=2, node_rank=k, backend="static") for k in (0, 1)]
    with started(nodes[0] + worker) as first, started(nodes[1] + worker) as second:
        done = [first.wait(JOB_TIMEOUT), second.wait(JOB_TIMEOUT)]
    assert [d.returncode for d in done] == [0, 0], done[0].stderr[-2000:] + done[1].stderr[-2000:]
    result, model = read(out, 0)
    assert result["world"] == 2
    assert_same_run(result, model, reference)


def test_a_checkpoint_continues_on_another_number_of_ranks(data, tmp_path) -> None:
    short = [dict(CONFIGS[0], epochs=1), dict(CONFIGS[1], epochs=1)]
    full = [dict(c, epochs=3) for c in CONFIGS]
    references = [fit(TrainConfig(**c), *data) for c in full]
    # 2 ranks, then one process ...
    two = launch(tmp_path, 2, short)
    for i, reference in enumerate(references):
        state, _ = artifacts.load_checkpoint(two / str(i))
        resumed = fit(TrainConfig(**full[i]), *data, state=state)
        model = {k: v for k, v in resumed.model.state_dict().items()}
        assert_same_run(resumed.history.to_dict(), model, reference)
    # ... and one process, then 3 ranks.
    one = tmp_path / "one"
    for i, c in enumerate(short):
        fit(
            TrainConfig(**c),
            *data,
            on_epoch=lambda s, i=i, c=c: artifacts.save_checkpoint(one / str(i), s, c),
        )
    three = launch(tmp_path, 3, full, resume=one)
    for i, reference in enumerate(references):
        assert_same_run(*read(three, i), reference)


def test_the_command_line_shows_the_collective_timeout_it_uses() -> None:
    from softmax_regression import distributed
    from softmax_regression.cli import parallel

    assert parallel.DEFAULT_TIMEOUT == distributed.DEFAULT_TIMEOUT
