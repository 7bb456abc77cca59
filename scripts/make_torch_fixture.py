"""Write tests/fixtures/torch_reference.npz: PyTorch's float64 results for the cases of
tests/torch_cases.py, which tests/test_torch_reference.py compares with this package's.

Run it once where PyTorch is installed (it is no dependency of the project), from the
repository root, after a change that alters the cases or the model's structure:

    PYTHONPATH=. python scripts/make_torch_fixture.py

The file holds plain arrays (np.savez_compressed, read back without pickle) and is written
atomically.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import minitorch_resnext as mr
from minitorch_resnext.bench.train import torch_twin

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _cases():
    spec = importlib.util.spec_from_file_location("torch_cases", TESTS / "torch_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_results(cases) -> dict[str, np.ndarray]:
    """Logits, loss and every parameter's gradient of a training step, the batch statistics
    it leaves, and the logits in eval mode after it."""
    twin = torch_twin(cases.model(), torch).double()
    x, labels = cases.model_inputs()
    out = {}
    logits = twin.train()(torch.from_numpy(x))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    loss.backward()
    out["model/train_logits"], out["model/loss"] = logits.detach().numpy(), loss.detach().numpy()
    for name, p in twin.named_parameters():
        out[f"model/grad/{name}"] = p.grad.numpy()
    for name, b in twin.named_buffers():
        out[f"model/after/{name}"] = b.numpy()
    with torch.no_grad():
        out["model/eval_logits"] = twin.eval()(torch.from_numpy(x)).numpy()
    return out


def conv_results(cases) -> dict[str, np.ndarray]:
    """Each conv case's output and its gradients for the grad_out of `cases.grad_out`."""
    out = {}
    for name, (_, _, kwargs) in cases.CONVS.items():
        x, w, b = (torch.from_numpy(a).requires_grad_() for a in cases.conv_inputs(name))
        y = torch.nn.functional.conv2d(x, w, b, **kwargs)
        y.backward(torch.from_numpy(cases.grad_out(tuple(y.shape))))
        for key, value in (("y", y), ("grad_x", x.grad), ("grad_w", w.grad), ("grad_b", b.grad)):
            out[f"conv/{name}/{key}"] = value.detach().numpy()
    return out


def main() -> int:
    torch.set_default_dtype(torch.float64)
    cases = _cases()
    target = TESTS / cases.FIXTURE
    arrays = {**model_results(cases), **conv_results(cases),
              "torch_version": np.array(torch.__version__)}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"wrote {target} ({target.stat().st_size} bytes, torch {torch.__version__}, "
          f"minitorch_resnext from {Path(mr.__file__).parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
