"""Data-parallel training as real 2-rank MPI jobs (`mpiexec -n 2 python -m mpi4py ...`).

Skipped, with the reason, where mpi4py or mpiexec is missing (`pip install -e ".[mpi]"`).
Every job runs under an outer timeout, so a hang fails the test instead of stalling it (jobs
that train a ResNeXt allow for Numba compiling the convolution kernels on a cold cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minitorch_resnext import checkpoint

SCRIPTS = Path(__file__).parent / "mpi_scripts"
RANKS = 2


def _mpiexec() -> str | None:
    """The mpiexec next to this Python (the mpich wheel's, matching mpi4py), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                       reason="mpi4py is not installed (pip install -e '.[mpi]')"),
    pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec found (the mpich wheel brings one)"),
]


def mpirun(*args: str, timeout: float = 60, runner: bool = True, ranks: int = RANKS,
           env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `mpiexec -n ranks python [-m mpi4py] args...`; the result and the seconds it took."""
    command = [MPIEXEC, "-n", str(ranks), sys.executable, *(["-m", "mpi4py"] if runner else []),
               *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    return done, time.perf_counter() - start


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compiled_kernels() -> None:
    """Compile the convolution kernels here, once, for the jobs that train a ResNeXt: Numba
    caches them on disk, so the ranks load them instead of each compiling them at once."""
    import minitorch_resnext as mr
    from minitorch_resnext import functional as F
    from minitorch_resnext import models

    model = models.get_model("resnext_small", num_classes=4, in_channels=1)
    for side in (8, 16):  # the image sizes of the train and bench jobs
        F.cross_entropy(model(mr.randn(2, 1, side, side)), mr.randint(0, 4, (2,))).backward()


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    done, _ = mpirun(str(SCRIPTS / "ddp_train.py"), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _states(out: Path, case: str) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(out / f"{case}_rank{r}.npz")) for r in range(RANKS)]


@pytest.mark.parametrize("case", ["syncbn", "nobn"])
def test_two_ranks_match_one_process_with_the_whole_batch(ddp_job: Path, case: str):
    job = _load_script("ddp_train")
    reference, _, _ = job.run(case, None)
    ranks = _states(ddp_job, case)
    assert all(bool(s.pop("__self_finished__")) for s in ranks)  # overlap: hooks did the sync
    assert [int(s.pop("__buckets__")) for s in ranks] == [1, 1]
    initial = job.build(job.CASES[case][0]).state_dict()
    first = next(iter(reference))  # the first layer's weight
    assert np.abs(reference[first] - initial[first]).max() > 1e-3  # it trained
    assert ranks[0].keys() == reference.keys()
    # float64 agrees to rounding (the ranks sum in another order): 1e-15 of each tensor's
    # largest value after the 6 steps; a wrong statistic or average is off by far more
    for key, want in reference.items():
        for state in ranks:
            np.testing.assert_allclose(state[key], want, rtol=0,
                                       atol=1e-12 * np.abs(want).max(), err_msg=key)


@pytest.mark.parametrize("case", ["syncbn", "syncbn_unbucketed", "nobn"])
def test_replicas_stay_bit_identical(ddp_job: Path, case: str):
    first, second = _states(ddp_job, case)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_bucketed_and_unbucketed_allreduce_agree_bit_for_bit(ddp_job: Path):
    bucketed, unbucketed = _states(ddp_job, "syncbn")[0], _states(ddp_job, "syncbn_unbucketed")[0]
    params = len(list(_load_script("ddp_train").build("bn").parameters()))
    assert int(bucketed.pop("__buckets__")) == 1
    assert int(unbucketed.pop("__buckets__")) == params  # one bucket per parameter
    for key in bucketed:
        np.testing.assert_array_equal(bucketed[key], unbucketed[key], err_msg=key)


@pytest.mark.parametrize("runner", [True, False], ids=["python-m-mpi4py", "plain-python"])
def test_an_exception_in_one_rank_ends_the_job_naming_the_rank(tmp_path: Path, runner: bool):
    done, seconds = mpirun(str(SCRIPTS / "fault.py"), "raise", str(tmp_path), runner=runner)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert seconds < 10, f"the job took {seconds:.1f} s to end"
    assert "RuntimeError: injected failure" in output
    assert "rank 1 of 2 failed" in output
    _assert_checkpoint_whole(tmp_path)


def test_a_killed_rank_ends_the_job_and_the_log_names_it(tmp_path: Path):
    done, seconds = mpirun(str(SCRIPTS / "fault.py"), "kill", str(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert seconds < 10, f"the job took {seconds:.1f} s to end"
    # rank 0 logged where each rank runs; mpiexec reports the dead process by its PID
    pid = re.search(r"rank 1 = pid (\d+)", output)
    assert pid is not None, output
    assert re.search(rf"PID {pid.group(1)}\b", output), output
    _assert_checkpoint_whole(tmp_path)


def _assert_checkpoint_whole(out: Path) -> None:
    """Whatever moment rank 0 was stopped at, last.npz is a complete checkpoint."""
    saved = checkpoint.load(out / "last.npz")
    assert saved["step"] in (1, 2)  # rank 1 fails at its step 3
    assert saved["model"]["weight"].shape == (256, 256)
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["last.npz"]


def test_train_command_distributed_matches_one_process(tmp_path: Path, compiled_kernels: None):
    # one thread per process in both runs: float32 rounding then differs only by the
    # allreduce's order (the thread count changes it, and training amplifies that)
    env = os.environ | {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    for out, ranks, extra in ((one, 1, []), (two, 2, ["--distributed"])):
        done, _ = mpirun(str(SCRIPTS / "train_job.py"), str(out), *extra, ranks=ranks, env=env,
                         timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("epoch   2/2") == 1 and done.stdout.count("done:") == 1  # rank 0
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    metrics = [[json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
               for out in (one, two)]
    assert len(metrics[1]) == 2  # one line per epoch, written once
    for a, b in zip(*metrics):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    weights = [checkpoint.load(out / "last.npz")["model"] for out in (one, two)]
    for key, want in weights[0].items():
        np.testing.assert_allclose(weights[1][key], want, rtol=0, atol=1e-4, err_msg=key)


def test_a_foreign_mpiexec_is_refused():
    # Open MPI's mpiexec says how many processes it started; MPICH's MPI connects only this one
    env = os.environ | {"OMPI_COMM_WORLD_SIZE": "2"}
    done = subprocess.run([sys.executable, "-c", "import minitorch_resnext.distributed as d; "
                           "d.init('mpi')"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0
    assert "mpiexec started 2 processes" in done.stderr and "another MPI library" in done.stderr


def test_bench_allreduce_quick_run_writes_its_json(tmp_path: Path, compiled_kernels: None):
    done, _ = mpirun("-m", "minitorch_resnext", "bench", "allreduce", "--quick", "--out",
                     str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("busbw GB/s") == 1  # rank 0 prints
    result = json.loads((tmp_path / "allreduce-cpu-quick.json").read_text())
    assert [r["floats"] for r in result["allreduce"]] == [2**10, 2**20]
    assert all(r["median_ms"] > 0 and r["algbw_gbs"] > 0 for r in result["allreduce"])
    variants = {v["variant"]: v for v in result["step"]["variants"]}
    assert list(variants) == ["local", "ddp", "ddp+syncbn"]
    assert 0 < variants["ddp+syncbn"]["comm_fraction"] < 1
    alone = subprocess.run([sys.executable, "-m", "minitorch_resnext", "bench", "allreduce"],
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode != 0 and "mpiexec -n 2" in alone.stderr
