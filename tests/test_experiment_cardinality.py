"""The cardinality experiment: matched ladder, budget and calibration logic, paired intervals,
the verdict rules, and a whole (tiny) run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from minitorch_resnext.experiments import cardinality as X

T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445}  # Student's t, 97.5th percentile


# ----- the models ---------------------------------------------------------------------------
def test_ladder_is_matched_and_its_blocks_are_equation_4():
    costs = X.check_ladder()
    base = costs[X.LADDER[0]]
    for v, c in costs.items():
        c_d, d = v.cardinality * v.width, v.width
        # every block of the model: 1x1 128 -> C*d, 3x3 grouped, 1x1 C*d -> 128
        assert c.block_params == (c_d * (2 * 128 + 9 * d),) * X.BLOCKS
        # whole model by hand: stem conv + BN, blocks (convs + three BNs), fc; 8x8 after the stem
        bn = 2 * (c_d + c_d + 128)
        assert c.params == 9 * 128 + 2 * 128 + X.BLOCKS * (c.block_params[0] + bn) + 128 * 10 + 10
        assert c.macs == 9 * 128 * 64 + X.BLOCKS * 64 * c.block_params[0] + 128 * 10
        assert abs(c.params / base.params - 1) <= 0.03 and abs(c.macs / base.macs - 1) <= 0.03
        assert d >= X.MIN_WIDTH
    assert [v.cardinality * v.width for v in X.LADDER] == [32, 40, 48, 56]  # width grows
    control = X.cost(X.CONTROL, 16)
    assert control.params < 0.25 * base.params and control.macs < 0.25 * base.macs


@pytest.mark.parametrize("ladder, rule", [
    ((X.Variant(1, 32), X.Variant(16, 2)), "floor d >= 4"),
    ((X.Variant(1, 32), X.Variant(8, 8)), "matched means within 3%"),
])
def test_unmatched_ladders_are_refused(ladder, rule):
    with pytest.raises(ValueError, match=rule):
        X.check_ladder(ladder)


@pytest.mark.parametrize("kwargs, rule", [
    ({"seeds": 1}, "seeds >= 2"), ({"min_steps": 50, "max_steps": 10}, "min_steps <= max_steps"),
    ({"level": 9}, "level <"), ({"pilots": 0}, "pilots >= 1"), ({"budget_s": 0}, "budget_s > 0"),
])
def test_bad_settings_are_refused(kwargs, rule):
    with pytest.raises(ValueError, match=rule):
        X.Settings(**kwargs)


# ----- budget and calibration ---------------------------------------------------------------
def test_steps_fill_the_budget():
    variants = (X.Variant(1, 32), X.Variant(2, 20))
    settings = X.Settings(seeds=3, pilots=2, min_steps=10, max_steps=10_000)
    step = {"1x32d": 0.01, "2x20d": 0.03}
    # 2 pilots of 1x32d + 3 seeds x both variants = 0.02 + 0.12 = 0.14 s per step; 8 test passes
    assert X.steps_for_budget(100.0, step, 0.5, settings, variants) == int((100 - 4) / 0.14)
    assert X.steps_for_budget(1.0, step, 0.5, settings, variants) == 10  # at least min_steps
    assert X.steps_for_budget(1e6, step, 0.5, settings, variants) == 10_000


@pytest.mark.parametrize("errors, start, chosen, tried", [
    ({2: 0.25}, 2, 2, [2]),                       # in the target band at once
    ({2: 0.05, 3: 0.20}, 2, 3, [2, 3]),           # too easy: one level harder
    ({2: 0.60, 1: 0.40}, 2, 1, [2, 1]),           # too hard: one level easier, closer to 25 %
    ({2: 0.05, 3: 0.70}, 2, 2, [2, 3]),           # overshoot: keep the closer of the two
    ({4: 0.05}, 4, 4, [4]),                       # no harder level to go to
])
def test_pilot_moves_towards_the_target(monkeypatch, errors, start, chosen, tried):
    calls = []

    def fake_run(variant, seed, steps, clutter, test_set, recipe):
        level = X.LEVELS.index(clutter)
        calls.append(level)
        assert variant == X.LADDER[0] and seed == X.PILOT_SEED
        # the pilot never looks at the test set
        assert not np.array_equal(test_set.data, X.ClutteredDigits(len(test_set), clutter).data)
        wrong = np.arange(100) < round(100 * errors[level])
        return X.Run(variant, seed, np.ones(steps), wrong, 0.0)

    monkeypatch.setattr(X, "train_run", fake_run)
    monkeypatch.setattr(X, "time_steps", lambda variants, recipe: {v.name: 0.01 for v in variants})
    settings = X.Settings(level=start, pilots=2, test_size=50, target_error=(0.15, 0.35))
    plan = X.make_plan(settings, X.LADDER, log=lambda line: None)
    assert calls == tried and plan.level == chosen and plan.pilot_errors == errors


# ----- paired intervals and the verdict -----------------------------------------------------
def make_run(variant, seed, error=0.25, loss=1.0, n=400, first_loss=2.3, rng=None):
    """A run with a given test error (first `error * n` images wrong, or random ones) and a
    training loss that falls from `first_loss` to `loss`."""
    wrong = np.arange(n) < round(error * n) if rng is None else rng.random(n) < error
    losses = np.concatenate([np.full(10, first_loss), np.full(80, (first_loss + loss) / 2),
                             np.full(10, loss)])
    return X.Run(variant, seed, losses, wrong, 1.0)


def test_paired_effect_of_the_loss_is_students_t_over_seeds():
    ref, var = X.LADDER[0], X.LADDER[1]
    diffs = [0.10, 0.30, 0.20, 0.60]
    reference = [make_run(ref, s, loss=1.0) for s in range(4)]
    runs = [make_run(var, s, loss=1.0 + d) for s, d in enumerate(diffs)]
    effect = X.paired_effect(runs, reference, "final_loss")
    mean, sd = np.mean(diffs), np.std(diffs, ddof=1)
    half = T_975[3] * sd / 2
    np.testing.assert_allclose([effect.mean, effect.low, effect.high],
                               [mean, mean - half, mean + half], rtol=1e-6)
    np.testing.assert_allclose(effect.per_seed, diffs, rtol=1e-12)


def test_paired_effect_of_the_error_adds_the_test_set_sampling():
    ref, var = X.LADDER[0], X.LADDER[1]
    rng = np.random.default_rng(0)
    reference = [make_run(ref, s, error=0.3, rng=rng) for s in range(3)]
    runs = [make_run(var, s, error=0.3, rng=rng) for s in range(3)]
    effect = X.paired_effect(runs, reference, "error")
    diffs = np.array([r.wrong.mean() - q.wrong.mean() for r, q in zip(runs, reference)])
    per_image = sum(r.wrong.astype(float) - q.wrong for r, q in zip(runs, reference)) / 3
    se = np.sqrt(diffs.var(ddof=1) / 3 + per_image.var(ddof=1) / per_image.size)
    np.testing.assert_allclose([effect.low, effect.high],
                               [diffs.mean() - T_975[2] * se, diffs.mean() + T_975[2] * se])
    with pytest.raises(ValueError, match="same seeds"):
        X.paired_effect(runs[::-1], reference, "error")
    with pytest.raises(ValueError, match="at least two"):
        X.paired_effect(runs[:1], reference[:1], "error")


@pytest.mark.parametrize("seeds", [2, 3, 4, 5])
def test_interval_covers_the_true_difference_95_percent(seeds, true=0.3, sd=0.2):
    """Over many simulated experiments with normal seed-to-seed noise, the interval holds the
    true difference in about 95 % of them (binomial 99.9 % band for 2000 trials: 93.4-96.5 %)."""
    rng = np.random.default_rng(seeds)
    ref, var = X.LADDER[0], X.LADDER[1]
    covered = 0
    for _ in range(2000):
        reference = [make_run(ref, s, loss=1.0) for s in range(seeds)]
        runs = [make_run(var, s, loss=1.0 + true + sd * rng.standard_normal()) for s in range(seeds)]
        e = X.paired_effect(runs, reference, "final_loss")
        covered += e.low <= true <= e.high
    assert 0.934 <= covered / 2000 <= 0.965


def make_result(top_shift: float, control_shift: float, seeds: int = 4) -> X.Result:
    """Synthetic runs: the ladder's errors near 25 %, the top rung shifted by `top_shift` and
    the control by `control_shift` (fractions), with a little seed-to-seed spread."""
    rng = np.random.default_rng(1)
    shift = {X.LADDER[-1]: top_shift, X.CONTROL: control_shift}
    runs = [make_run(v, s, error=0.25 + shift.get(v, 0.0) + 0.005 * rng.standard_normal(),
                     loss=0.8 + shift.get(v, 0.0), n=4000)
            for s in range(1, seeds + 1) for v in (*X.LADDER, X.CONTROL)]
    cost = X.Cost(56_000, 3_400_000, (17_408,) * 3)
    costs = {v: cost for v in X.LADDER} | {X.CONTROL: X.Cost(11_000, 580_000, (2_624,) * 3)}
    plan = X.Plan(100, 2, {}, 1.0, {2: 0.25}, 1.0)
    return X.Result(X.Settings(seeds=seeds), plan, costs, runs, 10.0, (1.0, 1.0))


@pytest.mark.parametrize("top, claim", [
    (-0.05, "reproduced"), (+0.05, "contradicted"), (0.0, "not reproduced at this scale"),
])
def test_the_claim_follows_the_interval(top, claim):
    result = make_result(top, control_shift=0.10)
    assert result.claim == claim and result.control_detected and result.learned
    text = result.verdict()
    assert claim.upper() in text and "detected" in text and "NOT detected" not in text
    assert all(v.name in result.table() for v in (*X.LADDER, X.CONTROL))


def test_an_invisible_control_is_reported():
    result = make_result(0.0, control_shift=0.0)
    assert not result.control_detected and "NOT detected" in result.verdict()


def test_a_run_that_did_not_learn_is_flagged():
    v = X.LADDER[0]
    assert make_run(v, 1, error=0.25).learned
    assert not make_run(v, 1, error=0.25, loss=2.3).learned        # loss did not fall
    assert not make_run(v, 1, error=0.88, n=500).learned           # within noise of chance (0.9)


# ----- a whole run, tiny ---------------------------------------------------------------------
def test_a_tiny_run_end_to_end(tmp_path):
    settings = dataclasses.replace(X.FAST, test_size=200, min_steps=8, max_steps=8)
    lines = []
    result = X.run(settings, log=lines.append)
    assert len(result.runs) == settings.seeds * (len(X.LADDER) + 1)
    assert {len(r.losses) for r in result.runs} == {8} and result.plan.steps == 8
    assert all(np.isfinite(r.losses).all() and r.wrong.shape == (200,) for r in result.runs)
    assert any(line.startswith("pilot:") for line in lines) and len(lines) >= len(result.runs)
    record = json.loads(json.dumps(result.to_json()))
    assert record["claim"] == result.claim and len(record["runs"]) == len(result.runs)
    X.figure(result).savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000


def test_the_same_seed_trains_the_same_way():
    test_set = X.ClutteredDigits(100, X.LEVELS[1])
    first, again, other = (X.train_run(X.LADDER[1], seed, 4, X.LEVELS[1], test_set, X.Recipe())
                           for seed in (3, 3, 4))
    np.testing.assert_array_equal(first.losses, again.losses)
    np.testing.assert_array_equal(first.wrong, again.wrong)
    assert not np.array_equal(first.losses, other.losses)


def test_the_command_line_prints_the_verdict_and_writes_the_record(tmp_path, monkeypatch, capsys):
    result = make_result(-0.05, control_shift=0.10)
    monkeypatch.setattr(X, "run", lambda settings: result)
    X.main(["--json", str(tmp_path / "record.json"), "--figure", str(tmp_path / "figure.png")])
    out = capsys.readouterr().out
    assert "Verdict: REPRODUCED" in out and "1x8d (control)" in out
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["claim"] == "reproduced" and record["control_detected"] is True
    assert record["threads"] >= 1 and "numpy" in record["versions"] and record["created"]
    assert len(record["runs"]) == len(result.runs)
    assert (tmp_path / "figure.png").stat().st_size > 10_000
