"""The CPU tuner: what it measures and chooses (on a fake clock), that tuned choices are exact
and are what runs, how they are kept on disk, the switch, the budget and the `tune` command."""

from __future__ import annotations

import json
import types

import numba
import numpy as np
import pytest

from minitorch_resnext import cli
from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import tune
from minitorch_resnext.kernels.cpu.blas_threads import blas_thread_count
from minitorch_resnext.kernels.cpu.conv import ruled
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import Choice, ConvAlgorithm
from minitorch_resnext.models import get_model
from minitorch_resnext.models.summary import conv_geometries
from minitorch_resnext.nn import Conv2d

# 8 channels per group at stride 1: every CPU algorithm computes every pass it has
GEOMETRY = Conv2dGeometry.of((2, 32, 12, 12), (32, 8, 3, 3), 1, 1, 1, 4)


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    """Tuning on for any size and time (compiling the candidates takes long on a first run),
    choices in a fresh folder, nothing remembered from other tests."""
    monkeypatch.setenv(tune.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(tune, "MIN_MACS", 0)
    monkeypatch.setattr(tune, "BUDGET_S", float("inf"))
    tune.forget()
    with tune.enabled(True):
        yield tmp_path / "tuning"
    tune.forget()


# --- what is measured and chosen, on a fake clock ------------------------------------------

COSTS = {("a", ()): 3.0, ("b", (("k", 1),)): 1.0, ("b", (("k", 2),)): 1.03, ("c", ()): 10.0}


def _fake(monkeypatch, slow_first: tuple = ()) -> tuple[dict[str, ConvAlgorithm], list, object]:
    """Algorithms a, b (parameter k in 1, 2) and c whose calls advance a fake clock by COSTS;
    the first call of those in `slow_first` takes 100 s more (as a compilation would)."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(tune, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    calls = []

    def run(pass_, geometry, choice, *operands):
        assert choice.source == "forced" and [a.shape for a in operands if a is not None] == [
            geometry.input_shape, geometry.weight_shape]
        key = (choice.algorithm, tuple(sorted(choice.params.items())))
        if key in slow_first and key not in calls:
            clock.now += 100.0
        calls.append(key)
        clock.now += COSTS[key]

    space = {"a": {}, "b": {"k": (1, 2)}, "c": {}}
    algorithms = {name: ConvAlgorithm(name, {"forward": None}, name, space=lambda p, g, s=s: s)
                  for name, s in space.items()}
    return algorithms, calls, run


def test_the_fastest_candidate_is_chosen_and_every_one_is_reported(monkeypatch):
    algorithms, calls, run = _fake(monkeypatch)
    rule = Choice("a", {}, "a rule")
    choice = tune.tune("forward", GEOMETRY, np.dtype("float32"), rule, algorithms, run)
    assert (choice.algorithm, dict(choice.params), choice.source) == ("b", {"k": 1}, "tuned")
    assert [(m.algorithm, dict(m.params), m.ms) for m in choice.measured] == [
        ("b", {"k": 1}, 1000.0), ("b", {"k": 2}, 1030.0), ("a", {}, 3000.0), ("c", {}, 10000.0)]
    assert "rules would run a" in choice.reason
    # a warm-up and a timed call each, then more rounds for those within CUT of the fastest
    counts = {key: calls.count(key) for key in COSTS}
    assert counts == {("a", ()): 2, ("b", (("k", 1),)): 1 + tune.ROUNDS,
                      ("b", (("k", 2),)): 1 + tune.ROUNDS, ("c", ()): 2}


def test_a_first_call_is_not_a_sample(monkeypatch):
    """A first call compiles, loads from Numba's cache or faults in pages: not the kernel's
    speed."""
    algorithms, calls, run = _fake(monkeypatch, slow_first=(("b", (("k", 1),)), ("c", ())))
    choice = tune.tune("forward", GEOMETRY, np.dtype("float32"), Choice("a", {}, ""), algorithms,
                       run)
    assert (choice.algorithm, dict(choice.params)) == ("b", {"k": 1})
    assert max(m.ms for m in choice.measured) == 10000.0  # c's slow first call is not its time
    assert calls.count(("c", ())) == 2 and calls.count(("b", (("k", 1),))) == 1 + tune.ROUNDS


def test_the_rules_choice_stays_within_the_margin(monkeypatch):
    algorithms, _, run = _fake(monkeypatch)
    rule = Choice("b", {"k": 2}, "a rule")  # 3 % slower than b, k=1: noise
    choice = tune.tune("forward", GEOMETRY, np.dtype("float32"), rule, algorithms, run)
    assert (choice.algorithm, dict(choice.params)) == ("b", {"k": 2})
    assert choice.measured[0].params == {"k": 1}  # still reported as the fastest


# --- real kernels ----------------------------------------------------------------------------

def test_tuned_choices_are_what_runs_and_exact(tuning, monkeypatch):
    choices = cpu.conv2d_algorithm(GEOMETRY)
    for pass_, choice in choices:
        assert choice.source == "tuned"
        expected = {(name, tuple(sorted(p.items()))) for name, a in cpu.ALGORITHMS.items()
                    for p in a.candidates(pass_, GEOMETRY)}
        assert {(m.algorithm, tuple(sorted(m.params.items()))) for m in choice.measured} == (
            expected)
        times = [m.ms for m in choice.measured]
        assert times == sorted(times) and times[0] > 0
    ran = []
    for name, algorithm in cpu.ALGORITHMS.items():
        for pass_, kernel in algorithm.kernels.items():
            def spy(*args, _name=name, _kernel=kernel, **params):
                ran.append((_name, params))
                return _kernel(*args, **params)
            monkeypatch.setitem(algorithm.kernels, pass_, spy)
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (
        GEOMETRY.input_shape, GEOMETRY.weight_shape, GEOMETRY.output_shape))
    results = (cpu.conv2d_forward(x, w, None, GEOMETRY), cpu.conv2d_grad_input(gy, w, GEOMETRY),
               cpu.conv2d_grad_weight(x, gy, GEOMETRY))
    assert ran == [(c.algorithm, dict(c.params)) for _, c in choices]
    x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
    for got, want in zip(results, (reference.conv2d_forward(x64, w64, None, GEOMETRY),
                                   reference.conv2d_grad_input(gy64, w64, GEOMETRY),
                                   reference.conv2d_grad_weight(x64, gy64, GEOMETRY))):
        assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)


def test_choices_are_kept_on_disk_per_machine_and_thread_count(tuning, monkeypatch):
    tuned = cpu.conv2d_algorithm(GEOMETRY)
    files = list(tuning.glob("conv-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["machine"] == tune.machine() and data["machine"]["threads"] == (
        numba.get_num_threads())
    assert data["machine"]["isa"] == cpu.TARGET.describe() and len(data["choices"]) == 3
    # a new process (here: forgotten memory) reads them back without measuring
    tune.forget()
    monkeypatch.setattr(tune, "tune", lambda *a: pytest.fail("measured again"))
    assert cpu.conv2d_algorithm(GEOMETRY) == tuned
    # another dtype is another measurement
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        cpu.conv2d_algorithm(GEOMETRY, np.float64)
    # another thread count is another file
    assert tune.cache_file({**tune.machine(), "threads": 99}) != files[0]


def test_blas_threads_are_part_of_the_setting(tuning, monkeypatch):
    """With Numba on one thread, im2col + GEMM runs on BLAS's threads: a choice measured with
    BLAS on two is not the one for BLAS on one (the same process included)."""
    cpu.conv2d_algorithm(GEOMETRY)
    assert tune.machine()["blas_threads"] == blas_thread_count()
    monkeypatch.setattr(tune, "blas_thread_count", lambda: blas_thread_count() + 1)
    monkeypatch.setattr(tune, "tune", lambda *a: pytest.fail("measured again"))
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        cpu.conv2d_algorithm(GEOMETRY)


def test_an_unreadable_or_foreign_file_is_measured_again_and_replaced(tuning):
    path = tune.cache_file(tune.machine())
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert cpu.conv2d_algorithm(GEOMETRY).forward.source == "tuned"
    data = json.loads(path.read_text())
    assert len(data["choices"]) == 3
    # an entry that names no candidate of this geometry (e.g. from an older version) is ignored
    key = next(iter(data["choices"]))
    data["choices"][key]["algorithm"] = "winograd"
    path.write_text(json.dumps(data))
    tune.forget()
    assert {c.algorithm for _, c in cpu.conv2d_algorithm(GEOMETRY)} <= set(cpu.ALGORITHMS)
    assert list(path.parent.glob(".*.tmp")) == []


def test_tuning_off_small_convolutions_and_a_spent_budget_run_the_rules(tuning, monkeypatch):
    with tune.enabled(False):
        assert all(c == ruled(p, GEOMETRY) for p, c in cpu.conv2d_algorithm(GEOMETRY))
    monkeypatch.setattr(tune, "MIN_MACS", GEOMETRY.macs + 1)
    assert all(c.source == "rule" for _, c in cpu.conv2d_algorithm(GEOMETRY))
    assert cpu.tune_conv2d(GEOMETRY)["forward"].source == "rule"  # not worth it either way
    with tune.enabled(False):
        monkeypatch.setattr(tune, "MIN_MACS", 0)
        assert cpu.tune_conv2d(GEOMETRY)["forward"].source == "rule"  # off is off
    monkeypatch.setattr(tune, "MIN_MACS", 0)
    monkeypatch.setattr(tune, "BUDGET_S", 0.0)
    assert all(c.source == "rule" for _, c in cpu.conv2d_algorithm(GEOMETRY))
    assert not tuning.exists()
    # the rules stay for this process, without looking for the file again ...
    read = tune._read
    monkeypatch.setattr(tune, "_read", lambda *a: pytest.fail("read again"))
    assert all(c.source == "rule" for _, c in cpu.conv2d_algorithm(GEOMETRY))
    monkeypatch.setattr(tune, "_read", read)
    # ... and ahead of time, the budget does not apply
    assert cpu.tune_conv2d(GEOMETRY, passes=("forward",))["forward"].source == "tuned"


@pytest.mark.parametrize("value, on", [(None, False), ("", False), ("1", True), ("on", True), ("0", False),
                                       ("off", False), ("False", False), (" no ", False)])
def test_the_environment_switch(value, on):
    assert tune.switched_on(value) is on


def test_an_unwritable_cache_is_said_once_and_changes_nothing_else(tuning, capsys):
    tuning.parent.mkdir(exist_ok=True)
    tuning.write_text("a file where the folder should be")
    tuned = cpu.conv2d_algorithm(GEOMETRY)
    cpu.conv2d_algorithm(GEOMETRY.with_batch(1))
    assert all(c.source == "tuned" for _, c in tuned)
    assert capsys.readouterr().err.count("could not save tuned choices") == 1


def test_tuning_on_first_use_is_announced_once(tuning, capsys):
    cpu.conv2d_algorithm(GEOMETRY)
    cpu.conv2d_algorithm(GEOMETRY.with_batch(1))
    err = capsys.readouterr().err
    assert err.count("timing the CPU convolution algorithms") == 1 and str(tuning) in err


# --- ahead of time ---------------------------------------------------------------------------

def test_conv_geometries_are_the_models_convolutions():
    model = get_model("resnext_small")
    geometries = conv_geometries(model, (3, 1, 16, 16))
    layers = [m for m in model.modules() if isinstance(m, Conv2d)]
    assert len(geometries) == len(layers)  # each runs once in this model
    assert geometries[0] == Conv2dGeometry.of((3, 1, 16, 16), layers[0].weight.shape, 1, 1, 1, 1)
    assert {(g.out_channels, g.groups, g.kernel_hw) for g in geometries} == {
        (m.out_channels, m.groups, m.kernel_size) for m in layers}
    assert all(g.batch == 3 for g in geometries)


def test_the_tune_command_tunes_every_convolution_of_a_model(tuning, capsys):
    assert cli.main(["tune", "resnext_small", "--batch", "2", "--input-size", "8",
                     "--forward-only"]) == 0
    out = capsys.readouterr().out
    geometries = set(conv_geometries(get_model("resnext_small"), (2, 1, 8, 8)))
    assert f"{len(geometries)} distinct" in out
    for g in geometries:
        assert str(g) in out
    (path,) = tuning.glob("conv-*.json")  # BLAS held to the command's thread count
    data = json.loads(path.read_text())
    assert len(data["choices"]) == len(geometries)  # forward only
    assert all(json.loads(k)[0] == "forward" for k in data["choices"])


def test_the_tune_command_holds_blas_to_its_thread_count(tuning, capsys):
    saved, blas = numba.get_num_threads(), blas_thread_count()
    try:
        assert cli.main(["tune", "resnext_small", "--batch", "2", "--input-size", "8",
                         "--forward-only", "--threads", "1"]) == 0
    finally:
        numba.set_num_threads(saved)
    (path,) = tuning.glob("conv-*.json")
    header = json.loads(path.read_text())["machine"]
    assert (header["threads"], header["blas_threads"]) == (1, 1)
    assert blas_thread_count() == blas  # as it was before the command


def test_the_tune_command_rejects_bad_arguments(capsys):
    assert cli.main(["tune", "nope"]) == 1
    assert "tune: error: unknown model 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["tune", "resnext_small", "--batch", "0"])
    assert "--batch: must be a positive integer, got '0'" in capsys.readouterr().err

