"""Run the op catalogue outside pytest and tabulate the results (`minitorch-resnext gradcheck`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from tqdm import tqdm

from .cases import CASES, check

FORWARD_TOLERANCE = 1e-10


@dataclass
class OpRow:
    op: str
    tried: int = 0
    forward_error: float = 0.0
    gradient_error: float = 0.0
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure


def check_op(name: str, examples: int, device: str = "cpu", seed: int = 0,
             progress: tqdm | None = None) -> OpRow:
    """Draw `examples` configurations of one op; on a failure hypothesis shrinks it and the
    smallest failing configuration is kept in `failure`."""
    case, row = CASES[name], OpRow(name)

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case.strategy())
    def one(drawn: tuple) -> None:
        inputs, kwargs = drawn
        row.tried += 1
        if progress is not None:
            progress.update(1)
        result = check(case, inputs, kwargs, device=device)
        if not math.isnan(result.forward_error):
            row.forward_error = max(row.forward_error, result.forward_error)
        if result.gradcheck is not None:
            row.gradient_error = max(row.gradient_error, result.gradcheck.max_rel_error)
        shapes = [tuple(x.shape) for x in inputs]
        if result.forward_error > FORWARD_TOLERANCE:
            raise AssertionError(f"forward error {result.forward_error:.3g} at shapes {shapes} {kwargs}")
        if result.gradcheck is not None and not result.gradcheck.ok:
            raise AssertionError(f"{result.gradcheck} at shapes {shapes} {kwargs}")

    try:
        one()
    except AssertionError as e:
        row.failure = str(e)
    return row


def check_ops(names: list[str], examples: int, device: str = "cpu", seed: int = 0) -> list[OpRow]:
    """Check each named op on `examples` drawn configurations, with a progress bar; one row per op."""
    with tqdm(total=len(names) * examples, desc="gradcheck", unit="config") as bar:
        rows = []
        for name in names:
            bar.set_postfix_str(name)
            rows.append(check_op(name, examples, device, seed, bar))
    return rows


def print_table(rows: list[OpRow]) -> None:
    """Print the rows of `check_ops` as a table with a verdict per op."""
    print(f"{'op':<20} {'configs':>7} {'worst fwd rel err':>18} {'worst grad rel err':>19}  verdict")
    for r in rows:
        verdict = "ok" if r.ok else "FAIL"
        print(f"{r.op:<20} {r.tried:>7} {r.forward_error:>18.2e} {r.gradient_error:>19.2e}  {verdict}")
    for r in rows:
        if not r.ok:
            print(f"\n{r.op}: {r.failure}")
    failed = sum(not r.ok for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} ops passed")
