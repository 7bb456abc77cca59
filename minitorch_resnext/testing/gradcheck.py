"""Gradient checking against float64 central differences.

For a random upstream gradient `v`, the analytic vector-Jacobian product `v^T J` from
`backward` is compared with the numeric one, `v^T (f(x + eps e_i) - f(x - eps e_i)) / 2eps`,
for every element i of every input that requires grad.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor


@dataclass
class GradcheckReport:
    """Outcome of one `gradcheck`: `ok`, and where the worst mismatch was."""

    ok: bool
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst: dict = field(default_factory=dict)
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return self.message


def _outputs(fn: Callable[..., Tensor | Sequence[Tensor]], inputs: Sequence[Tensor]) -> list[Tensor]:
    out = fn(*inputs)
    return list(out) if isinstance(out, list | tuple) else [out]


def gradcheck(
    fn: Callable[..., Tensor | Sequence[Tensor]],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    seed: int = 0,
    raise_exception: bool = False,
) -> GradcheckReport:
    """Compare `fn`'s backward with central differences; all float inputs must be float64.

    Passes when |analytic - numeric| <= atol + rtol * |numeric| for every element.
    Returns a report that is truthy on success and prints the worst element.
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; central differences need float64"
            )
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    vs = [rng.standard_normal(o.shape) for o in outs]

    for i in checked:
        inputs[i].grad = None
    total = sum((o * Tensor(v, dtype=o.dtype, device=o.backend)).sum() for o, v in zip(outs, vs))
    total.backward()
    analytic = {
        i: (inputs[i].grad.numpy() if inputs[i].grad is not None else np.zeros(inputs[i].shape))
        for i in checked
    }

    def objective() -> float:
        with no_grad():
            return float(sum(float((o.numpy() * v).sum()) for o, v in zip(_outputs(fn, inputs), vs)))

    worst = {"excess": -np.inf}
    max_abs = max_rel = 0.0
    for i in checked:
        data = inputs[i].data
        for j in range(data.size):
            idx = np.unravel_index(j, data.shape)
            orig = data[idx].item()
            data[idx] = orig + eps
            plus = objective()
            data[idx] = orig - eps
            minus = objective()
            data[idx] = orig
            numeric = (plus - minus) / (2 * eps)
            got = float(analytic[i][idx])
            err = abs(got - numeric)
            max_abs = max(max_abs, err)
            max_rel = max(max_rel, err / max(abs(numeric), 1e-12))
            excess = err - (atol + rtol * abs(numeric))
            if excess > worst["excess"]:
                worst = {"excess": excess, "input": i, "index": tuple(int(k) for k in idx),
                         "analytic": got, "numeric": numeric}
    ok = worst["excess"] <= 0
    verdict = "passed" if ok else "FAILED"
    message = (
        f"gradcheck {verdict}: worst at input {worst['input']} index {worst['index']}: "
        f"analytic {worst['analytic']:.10g} vs numeric {worst['numeric']:.10g} "
        f"(max abs error {max_abs:.3g}, max rel error {max_rel:.3g}; atol={atol}, rtol={rtol})"
    )
    report = GradcheckReport(ok, max_abs, max_rel, worst, message)
    if raise_exception and not ok:
        raise AssertionError(message)
    return report
