"""Tell the user, once per process, when this package's Numba kernels are being compiled.

A first run compiles the kernels for this machine (up to a minute for all of them) and then
loads them from Numba's on-disk cache; without a word, that first minute looks like a hang.
Numba announces real compilations (not cache loads) as "numba:compile" events.
"""

from __future__ import annotations

import sys

from numba.core import event

_PACKAGE = "minitorch_resnext.kernels"


class _CompileNotice(event.Listener):
    def __init__(self) -> None:
        self.said = False

    def on_start(self, ev: event.Event) -> None:
        func = getattr(ev.data.get("dispatcher"), "py_func", None)
        module = getattr(func, "__module__", None) or ""  # None for exec-generated functions
        if self.said or not module.startswith(_PACKAGE):
            return
        self.said = True
        print("minitorch-resnext: compiling the CPU kernels for this machine (first use only, "
              "cached afterwards; up to a minute)...", file=sys.stderr, flush=True)

    def on_end(self, ev: event.Event) -> None:
        pass


event.register("numba:compile", _CompileNotice())
