"""Mutation check: does the test suite catch plausible bugs in the convolution kernels?

Each mutant is a small source edit of one module (a dropped remainder, an off-by-one, a wrong
offset, a moved threshold, ...). The script copies the package and the tests into a work
directory (the checkout is never edited), applies one mutant at a time there, runs the tests
that should catch it, and reports which mutants the tests catch: a table, and JSON.

    .venv/bin/python scripts/mutation_check.py                  # every mutant (long: see below)
    .venv/bin/python scripts/mutation_check.py --only implicit  # the mutants whose name has it
    .venv/bin/python scripts/mutation_check.py --list

First the unmutated copy must pass the tests of every mutant. A mutant is "caught" when its
tests fail (or crash), "missed" when they pass, "timeout" when they run past --timeout, and
"stale" when an edit no longer matches the source (update the mutant). Tests stop at the first
failure (-x), and hypothesis runs derandomized without shrinking (the "mutation" profile of
tests/conftest.py), so a caught mutant costs little; a mutated kernel module is compiled
again, which dominates the time. Numba keeps its cache in the work directory: the cache of the
unmutated sources is made once and copied for each mutant. The table of the last run is in
docs/architecture.md ("What the tests catch").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGIMES = "tests/test_conv_regimes.py"
SELECTION = "tests/test_conv_selection.py"
KERNELS = "tests/test_conv_kernels.py"
BOUNDS = f"{REGIMES}::test_kernels_stay_in_bounds"
DETERMINISM = f"{REGIMES}::test_grad_weight_is_deterministic_across_thread_counts"


@dataclass(frozen=True)
class Mutant:
    """`edits` (old, new) of the module at `path` (each old text occurs there exactly once);
    `tests`: the pytest arguments that select the tests expected to catch it."""

    name: str
    path: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


def regimes(algorithm: str) -> tuple[str, ...]:
    """An algorithm's fixed float32 cases first, then its hypothesis test."""
    return (f"{REGIMES}::test_kernel_regimes", f"{KERNELS}::test_cpu_kernels_explicit_cases",
            f"{KERNELS}::test_cpu_kernels_channel_leftovers_and_gemm_chunking",
            f"{KERNELS}::test_{algorithm}_kernels_match_reference",
            "-k", f"{algorithm} and float32 or {algorithm}_kernels_match")


# the depthwise kernel's "stream" writes: its fixed case, then its hypothesis test
STREAM = (f"{REGIMES}::test_kernel_regimes", f"{KERNELS}::test_depthwise_stream_matches_reference",
          "-k", "depthwise and float32 or stream")


# the direct kernel's read="stream": its fixed cases, then its hypothesis test
DIRECT_STREAM = (f"{REGIMES}::test_kernel_regimes",
                 f"{KERNELS}::test_direct_reads_in_place_or_from_buffers_as_the_reference",
                 "-k", "direct and float32 or in_place")


# the forward's fused epilogue against the reference, on every algorithm
EPILOGUE = (f"{KERNELS}::test_forward_epilogue_matches_reference",
            f"{KERNELS}::test_forward_epilogue_keeps_nan_and_checks_the_residual")


def threshold(name: str, old: str, new: str) -> Mutant:
    return Mutant(f"rules: {name} {old} -> {new}", "kernels/cpu/rules.py",
                  ((f"\n{name} = {old}", f"\n{name} = {new}"),), (SELECTION,))


MUTANTS = [
    # --- direct.py
    Mutant("direct: forward's task split drops the remainder", "kernels/cpu/direct.py",
           (("        for unit in range(t * units // tasks, (t + 1) * units // tasks):\n"
             "            g, first = unit % groups, unit // groups * segs\n"
             "            last = min(items, first + segs)\n            size = _load_block(",
             "        for unit in range(t * (units // tasks), (t + 1) * (units // tasks)):\n"
             "            g, first = unit % groups, unit // groups * segs\n"
             "            last = min(items, first + segs)\n            size = _load_block("),),
           regimes("direct")),
    Mutant("direct: grad_input's task split drops the remainder", "kernels/cpu/direct.py",
           (("        for unit in range(t * units // tasks, (t + 1) * units // tasks):\n"
             "            g, first = unit % groups, unit // groups * segs\n"
             "            last = min(items, first + segs)\n            size = 0\n",
             "        for unit in range(t * (units // tasks), (t + 1) * (units // tasks)):\n"
             "            g, first = unit % groups, unit // groups * segs\n"
             "            last = min(items, first + segs)\n            size = 0\n"),),
           regimes("direct")),
    Mutant("direct: grad_weight's chunks drop the remainder", "kernels/cpu/direct.py",
           (("for blk in range(k * blocks // chunks, (k + 1) * blocks // chunks):",
             "for blk in range(k * (blocks // chunks), (k + 1) * (blocks // chunks)):"),),
           regimes("direct")),
    Mutant("direct: forward reads the group's input at the output's offset",
           "kernels/cpu/direct.py",
           (("            last = min(items, first + segs)\n"
             "            size = _load_block(xf, x.shape, g * cg, cg,",
             "            last = min(items, first + segs)\n"
             "            size = _load_block(xf, x.shape, g * og, cg,"),),
           regimes("direct")),
    Mutant("direct: grad_weight leaves stale rows between stacked images",
           "kernels/cpu/direct.py",
           (("rows = min(seg_rows, out_h - r0) + (oi_max if item < last - 1 else 0)",
             "rows = min(seg_rows, out_h - r0)"),),
           regimes("direct")),
    Mutant("direct: the leftover taps of a block of four outputs skip one",
           "kernels/cpu/direct.py",
           (("_single_taps(dst, d, d_stride, p, p + 4, n, src, offsets, t, t1, coef",
             "_single_taps(dst, d, d_stride, p, p + 4, n, src, offsets, t, t1 - 1, coef"),),
           regimes("direct")),
    Mutant("direct: grad_weight's partial sums follow the thread count",
           "kernels/cpu/direct.py",
           (("from numba import njit, prange\n", "import numba\nfrom numba import njit, prange\n"),
            ("max(1, _GRAD_WEIGHT_TASKS // groups)",
             "max(1, 8 * numba.get_num_threads() // groups)")),
           (DETERMINISM,)),
    # --- tiled.py
    Mutant("tiled: a band of rows misses its last input row", "kernels/cpu/tiled.py",
           (("min(h, (r0 + nr - 1) * sh + (kh - 1) * dh - ph + 1)",
             "min(h, (r0 + nr - 1) * sh + (kh - 1) * dh - ph)"),),
           regimes("tiled")),
    Mutant("tiled: strided rows end where the output row does (no reach)",
           "kernels/cpu/tiled.py",
           (("        pitch = out_w + reach_w\n", "        pitch = out_w\n"),),
           regimes("tiled")),
    Mutant("tiled: rows padded past the kernel share their padding", "kernels/cpu/tiled.py",
           (("if sh == 1 and sw == 1 and pb >= 0 and pr >= 0:", "if sh == 1 and sw == 1:"),),
           regimes("tiled")),
    Mutant("tiled: a block writes one output row too few", "kernels/cpu/tiled.py",
           (("m, nr = min(m_img, n_img - n0), min(rows, out_h - r0)",
             "m, nr = min(m_img, n_img - n0), min(rows, out_h - r0 - 1)"),),
           regimes("tiled")),
    Mutant("tiled: grad_input's weights flipped in one axis only", "kernels/geometry.py",
           (("[:, :, :, ::-1, ::-1]", "[:, :, :, ::-1, :]"),),
           regimes("tiled")),
    # --- implicit.py
    Mutant("implicit: the bias offset of the second lane tile dropped",
           "kernels/cpu/implicit.py",
           (("(g * jts + jt) * lanes\n", "g * jts * lanes\n"),),
           regimes("implicit")),
    Mutant("implicit: the bias read past its end again (unpadded)", "kernels/cpu/implicit.py",
           (("b = _pad_bias(bias, y.shape[1], groups, lanes, y.dtype)",
             "b = np.zeros(y.shape[1], y.dtype) if bias is None else bias"),
            ("(g * jts + jt) * lanes\n", "g * og + jt * lanes\n"),
            ("(g * jts + jt) * nr,\n", "g * og + jt * nr,\n")),
           (BOUNDS,)),
    Mutant("implicit: the last, smaller block of images skipped", "kernels/cpu/implicit.py",
           (("for blocks in (Blocks(0, n_img // m, m), Blocks(full, 1, tail)):",
             "for blocks in (Blocks(0, n_img // m, m),):"),),
           regimes("implicit")),
    Mutant("implicit: row tiles stop a kernel row early at the bottom",
           "kernels/cpu/implicit.py",
           (("max(0, 1 - r), min(kh, h + 1 - r)", "max(0, 1 - r), min(kh, h - r)"),),
           regimes("implicit")),
    Mutant("implicit: taps inside the image checked against the height for columns",
           "kernels/cpu/implicit.py",
           (("(iw >= 0) & (iw < wd), iw, wd)", "(iw >= 0) & (iw < h), iw, wd)"),),
           regimes("implicit")),
    Mutant("implicit: grad_input's weights not flipped", "kernels/cpu/implicit.py",
           (("geometry.transposed_weights(w)", "geometry.transposed_weights(w[:, :, ::-1, ::-1])"),),
           regimes("implicit")),
    Mutant("implicit: row tiles' second lane tile packed from the first's weights",
           "kernels/cpu/implicit.py",
           (("(g * og + jt * nr) * per_out, per_out", "g * og * per_out, per_out"),),
           regimes("implicit")),
    Mutant("implicit: row tiles read the column after a row's last segment",
           "kernels/cpu/implicit.py",
           (("k > 0, k + segment < ow, segment", "k > 0, k + segment <= ow, segment"),),
           regimes("implicit")),
    Mutant("implicit: row tiles' last slice of lane tiles stops one short",
           "kernels/cpu/implicit.py",
           (("jt1 = min(jt0 + per_part, jts)", "jt1 = min(jt0 + per_part, jts - 1)"),),
           regimes("implicit")),
    Mutant("implicit: planned tiles' last slice of lane tiles stops one short",
           "kernels/cpu/implicit.py",
           (("range(part * per_part, min(jts, (part + 1) * per_part))",
             "range(part * per_part, min(jts - 1, (part + 1) * per_part))"),),
           regimes("implicit")),
    Mutant("implicit: grad_input's planned tiles pack the first lane tile's weights",
           "kernels/cpu/implicit.py",
           (("((g * cg + c) * og + jt * lanes) * ntap", "(g * cg + c) * og * ntap"),),
           regimes("implicit")),
    Mutant("implicit: grad_weight's slices of output channels leave some out",
           "kernels/cpu/implicit.py",
           (("per_part = -(-og // parts)", "per_part = og // parts"),),
           regimes("implicit")),
    Mutant("implicit: grad_weight's every chunk of pixels sums from the first",
           "kernels/cpu/implicit.py",
           (("d0, d1, ai = cuts[r, k], cuts[r, k + 1]", "d0, d1, ai = cuts[r, 0], cuts[r, k + 1]"),),
           regimes("implicit")),
    Mutant("implicit: grad_weight's tap lists after one with no step in a chunk skipped",
           "kernels/cpu/implicit.py",
           (("if d0 == d1:\n                        continue",
             "if d0 == d1:\n                        break"),),
           regimes("implicit")),
    # --- gemm.py
    Mutant("gemm: the last chunk of images dropped", "kernels/cpu/gemm.py",
           (("for n0 in range(start, stop, self.step)]",
             "for n0 in range(start, stop - 1, self.step)]"),),
           regimes("gemm")),
    Mutant("gemm: grad_weight's partial sums follow the thread count", "kernels/cpu/gemm.py",
           (("return [plan.weight_sum(x, gy, lo, min(lo + plan.part, stop))\n"
             "                for lo in range(start, stop, plan.part)]",
             "return [plan.weight_sum(x, gy, start, stop)]"),),
           (DETERMINISM,)),
    Mutant("blas_threads: the last thread's range ends an image early",
           "kernels/cpu/blas_threads.py",
           (("for i in range(parts)] + [n]", "for i in range(parts)] + [n - 1]"),),
           regimes("gemm")),
    Mutant("gemm: strided 1x1 subsamples columns by the row stride", "kernels/cpu/gemm.py",
           ((":: self.stride[0], :: self.stride[1]]", ":: self.stride[0], :: self.stride[0]]"),),
           regimes("gemm")),
    Mutant("gemm: im2col dilates columns by the row dilation", "kernels/cpu/gemm.py",
           (("s = plane + ih * wd + lo * sw + j * dw - pw",
             "s = plane + ih * wd + lo * sw + j * dh - pw"),),
           regimes("gemm")),
    # --- pointwise.py
    Mutant("pointwise: the last, partial strip of columns dropped", "kernels/cpu/pointwise.py",
           (("    strips = -(-columns // NR)\n    panels", "    strips = columns // NR\n    panels"),),
           regimes("pointwise")),
    Mutant("pointwise: strided columns stepped by the row stride", "kernels/cpu/pointwise.py",
           (("src[j] = n * x_image + r * x_step[0] * x_hw[1] + q * x_step[1]",
             "src[j] = n * x_image + r * x_step[0] * x_hw[1] + q * x_step[0]"),),
           regimes("pointwise")),
    Mutant("pointwise: a panel's last, partial block of tiles dropped", "kernels/cpu/pointwise.py",
           (("    blocks = -(-tiles // tiles_per_task)", "    blocks = tiles // tiles_per_task"),),
           regimes("pointwise")),
    Mutant("pointwise: rows past the last tile's read the next rows' weights",
           "kernels/cpu/pointwise.py",
           (("rows[i] = min(i, valid - 1) * row_step", "rows[i] = i * row_step"),), (BOUNDS,)),
    Mutant("pointwise: the task split counts the weights once, however many panels read them",
           "kernels/cpu/pointwise.py",
           (("return rows * panels + columns * blocks(panels), panels",
             "return rows + columns * blocks(panels), panels"),),
           (f"{REGIMES}::test_pointwise_splits_the_product_where_it_repeats_fewest_bytes",)),
    Mutant("pointwise: small products woken onto every thread", "kernels/cpu/pointwise.py",
           (("    with one_thread_below(geometry.macs, PARALLEL_MIN_MACS), slp_vectorized():",
             "    with slp_vectorized():"),),
           (f"{REGIMES}::test_small_calls_run_on_the_calling_thread",)),
    # --- depthwise.py
    Mutant("depthwise: the task split drops the remainder", "kernels/cpu/depthwise.py",
           (("        for p in range(t * planes // tasks, (t + 1) * planes // tasks):\n"
             "            n, o = p // c_out, p % c_out",
             "        for p in range(t * (planes // tasks), (t + 1) * (planes // tasks)):\n"
             "            n, o = p // c_out, p % c_out"),),
           regimes("depthwise")),
    Mutant("depthwise: 'plane' copies one row too few out", "kernels/cpu/depthwise.py",
           (("                for r in range(out_h):\n                    transfer(ybuf",
             "                for r in range(out_h - 1):\n                    transfer(ybuf"),),
           regimes("depthwise")),
    Mutant("depthwise: strided, the rows a tap reads found by // for %",
           "kernels/cpu/depthwise.py",
           (("read |= 1 << (i * dh % sh)", "read |= 1 << (i * dh // sh)"),),
           regimes("depthwise")),
    Mutant("direct: stride-2 rows put a pixel pair's second half a column late",
           "kernels/cpu/direct.py",
           (("b + (1 - p) * phase_len + v + p, img,", "b + (1 - p) * phase_len + v + 1, img,"),),
           regimes("tiled")),
    Mutant("direct: stride-2 rows drop their odd last pixel", "kernels/cpu/direct.py",
           (("if first + 2 * pairs < last:", "if first + 2 * pairs < last - 1:"),),
           regimes("direct")),
    Mutant("intrinsics: pair_phases moves a pair too few in rows shorter than a vector",
           "kernels/cpu/intrinsics.py",
           (("(below(pixels), below(pixels, lanes), below(count_))",
             "(below(pixels), below(pixels, lanes), below(builder.sub(count_, const(1))))"),),
           ("tests/test_intrinsics.py",)),
    Mutant("intrinsics: store_transposed stores a row past the columns asked",
           "kernels/cpu/intrinsics.py",
           (('builder.icmp_signed("<", ir.Constant(cols.type, j), cols)',
             'builder.icmp_signed("<=", ir.Constant(cols.type, j), cols)'),),
           ("tests/test_intrinsics.py",)),
    Mutant("intrinsics: store_transposed stores an element past the rows asked",
           "kernels/cpu/intrinsics.py",
           (('inside = builder.icmp_signed("<", ', 'inside = builder.icmp_signed("<=", '),),
           ("tests/test_intrinsics.py",)),
    Mutant("implicit: row tiles store an output channel past the group's",
           "kernels/cpu/implicit.py",
           (('f"min(at.lanes, {lanes}))")', 'f"min(at.lanes + 1, {lanes}))")'),),
           regimes("implicit")),
    Mutant("depthwise: grad_weight's dot products stop a row short", "kernels/cpu/depthwise.py",
           (("    n = (out_h - 1) * pitch + out_w\n", "    n = (out_h - 1) * pitch\n"),),
           regimes("depthwise")),
    Mutant("depthwise: grad_weight's 'stream' stops its loop over a plane a pixel short",
           "kernels/cpu/depthwise.py",
           (("(h - 2 * dh) * wd - 2 * dw, masks", "(h - 2 * dh) * wd - 2 * dw - 1, masks"),),
           STREAM),
    Mutant("depthwise: grad_weight's 'stream' gives the bottom rows kernel rows 1 and 2",
           "kernels/cpu/depthwise.py",
           (("rows[2 * r + 1] = (h - dh + r, 0)", "rows[2 * r + 1] = (h - dh + r, 1)"),), STREAM),
    Mutant("depthwise: grad_weight's 'stream' takes the pixels after its loop a row up",
           "kernels/cpu/depthwise.py", (("(h - dh - 1, wd - dw)", "(h - dh - 2, wd - dw)"),),
           STREAM),
    Mutant("depthwise: 'stream' masks one column too few on the right",
           "kernels/cpu/direct.py", (("(col < wd - dw)", "(col <= wd - dw)"),), STREAM),
    Mutant("depthwise: grad_weight's 'stream' calls not whole rows (masks out of step)",
           "kernels/cpu/depthwise.py",
           (("masks[0].size - wd\n", "masks[0].size - wd - 1\n"),), STREAM),
    Mutant("depthwise: 'stream' masks the left taps by the right columns",
           "kernels/cpu/direct.py",
           (("masks[0, :plane], masks[2, :plane] = _column_masks(wd, dw, h)",
             "masks[2, :plane], masks[0, :plane] = _column_masks(wd, dw, h)"),), STREAM),
    Mutant("depthwise: 'stream' reads each output's taps a pixel early",
           "kernels/cpu/depthwise.py", (("xf, xb - first, in_place", "xf, xb - first - 1, in_place"),),
           STREAM),
    Mutant("depthwise: grad_weight's 'stream' masks the wrong edge for each kernel column",
           "kernels/cpu/depthwise.py",
           (('masked = ("vl", "v", "vr")', 'masked = ("vr", "v", "vl")'),), STREAM),
    Mutant("direct: 'stream' masks each kernel column by the other edge's columns",
           "kernels/cpu/intrinsics.py",
           (("col_ok = [columns(j, k) for j in range(3)]",
             "col_ok = [columns(2 - j, k) for j in range(3)]"),), DIRECT_STREAM),
    Mutant("direct: 'stream' drops the top kernel row's taps a pixel too many",
           "kernels/cpu/intrinsics.py",
           (('builder.icmp_signed(">=", pixels, rows[0])',
             'builder.icmp_signed(">", pixels, rows[0])'),), DIRECT_STREAM),
    Mutant("direct: 'stream' stops the bottom kernel row a row early",
           "kernels/cpu/direct.py",
           (("(dh * wd, (h - dh) * wd), dh * wd + dw", "(dh * wd, (h - dh - 1) * wd), dh * wd + dw"),),
           DIRECT_STREAM),
    Mutant("direct: 'stream' drops the last step's partial vector",
           "kernels/cpu/intrinsics.py",
           (("builder.srem(plane_, n(step)), n(lanes - 1))", "builder.srem(plane_, n(step)), n(0))"),),
           DIRECT_STREAM),
    Mutant("direct: 'stream' starts each block of four input channels from the bias",
           "kernels/cpu/intrinsics.py",
           (("[load(out, ok) if accumulate else b", "[b if accumulate else b"),), DIRECT_STREAM),
    Mutant("direct: 'stream' runs its unmasked interior steps a step into the bottom rows",
           "kernels/cpu/intrinsics.py",
           (("bottom = smaller(builder.sdiv(builder.extract_value(rows_, 1), n(step)), full)",
             "bottom = smaller(builder.sdiv(builder.add(builder.extract_value(rows_, 1), "
             "n(step - 1)), n(step)), full)"),), DIRECT_STREAM),
    Mutant("direct: 'stream' runs the first interior step as an edge step, skips the last edge",
           "kernels/cpu/intrinsics.py",
           (('builder.icmp_signed("<", i, top), i,', 'builder.icmp_signed("<=", i, top), i,'),),
           DIRECT_STREAM),
    Mutant("direct: non-temporal stores on planes that are not whole vectors",
           "kernels/cpu/direct.py",
           (("memory.last_level_cache_bytes() and plane % VECTOR_BYTES == 0",
             "memory.last_level_cache_bytes() and plane % 4 == 0"),),
           (f"{KERNELS}::test_stream_writes_large_outputs_past_the_caches",)),
    Mutant("direct: 'stream' orders the weights' taps by column, then row",
           "kernels/cpu/direct.py",
           (("out[at + 4 * q] = w[o, c, q // 3, q % 3]",
             "out[at + 4 * q] = w[o, c, q % 3, q // 3]"),), DIRECT_STREAM),
    Mutant("direct: 'stream' gives every block of four input channels the first one's weights",
           "kernels/cpu/direct.py",
           (("(o0 // 4 * cg + e) * 36", "(o0 // 4 * cg) * 36"),), DIRECT_STREAM),
    # --- the forward's epilogue (activation.py, the kernels that apply it) and inference.py
    Mutant("pointwise: buffered strips store their outputs without the residual",
           "kernels/cpu/pointwise.py",
           (("                            v += residual[u(yo + dst[j0 + j])]",
             "                            v += 0"),), EPILOGUE),
    Mutant("pointwise: the ReLU of stored tiles clamps at -inf", "kernels/cpu/pointwise.py",
           (("    lo = y.dtype.type(0) if relu else y.dtype.type(-np.inf)",
             "    lo = y.dtype.type(-np.inf)"),), EPILOGUE),
    Mutant("gemm: the epilogue skips the ReLU", "kernels/cpu/gemm.py",
           (("residual[start:stop], relu, parallel=False)",
             "residual[start:stop], False, parallel=False)"),), EPILOGUE),
    Mutant("activation: the epilogue pass skips the last partial chunk",
           "kernels/cpu/activation.py",
           (("        finish(y, t * _CHUNK, min(_CHUNK, y.size - t * _CHUNK), residual, relu)",
             "        finish(y, t * _CHUNK, _CHUNK if t * _CHUNK + _CHUNK <= y.size else 0, "
             "residual, relu)"),), EPILOGUE),
    Mutant("inference: a ReLU fused into a convolution whose output is read again",
           "minitorch_resnext/inference.py",
           (("if step.fn is ReLU and (conv := fusible(step.slots[0])) and sole_reader(conv.out):",
             "if step.fn is ReLU and (conv := fusible(step.slots[0])):"),),
           ("tests/test_inference.py",)),
    # --- pooling.py
    Mutant("pooling: max pooling without taps stops a window's columns one short",
           "kernels/cpu/pooling.py",
           (("_max_step(col, lo + j - pw, 1, yf, row + lo, hi - lo)",
             "_max_step(col, lo + j - pw, 1, yf, row + lo, hi - lo - 1)"),),
           ("tests/test_fused_kernels.py", "tests/test_pooling.py", "-k", "max_pool")),
    # --- rules.py and the conditions of selection.py
    Mutant("blas_threads: a BLAS as wide as the kernels counted as narrower",
           "kernels/cpu/blas_threads.py",
           (("VECTOR_BYTES is not None and VECTOR_BYTES < vector_bytes",
             "VECTOR_BYTES is not None and VECTOR_BYTES <= vector_bytes"),),
           (f"{SELECTION}::test_own_kernels_replace_blas_where_it_runs_narrower_vectors",)),
    threshold("POINTWISE_GEMM_MIN_CHANNELS", "8", "16"),
    threshold("POINTWISE_MIN_IMAGE_MACS", "1 << 22", "1 << 21"),
    Mutant("rules: 1x1 grad_weight on the GEMM where BLAS is narrower", "kernels/cpu/rules.py",
           (("    *_FIRST, _POINTWISE_WEIGHT_OWN, _POINTWISE,", "    *_FIRST, _POINTWISE,"),),
           (f"{SELECTION}::test_own_kernels_replace_blas_where_it_runs_narrower_vectors",)),
    Mutant("rules: im2col + GEMM ahead of the implicit kernel where BLAS is narrower",
           "kernels/cpu/rules.py",
           (("_POINTWISE, _ROWS, _GEMM_OWN, _GEMM, _IMPLICIT,\n           _strided",
             "_POINTWISE, _ROWS, _GEMM, _IMPLICIT,\n           _strided"),),
           (f"{SELECTION}::test_own_kernels_replace_blas_where_it_runs_narrower_vectors",)),
    Mutant("rules: the pointwise rule's size condition dropped", "kernels/cpu/rules.py",
           ((", NARROW_BLAS,\n                  image_macs_at_least(POINTWISE_MIN_IMAGE_MACS)),",
             ", NARROW_BLAS),"),),
           (f"{SELECTION}::test_own_kernels_replace_blas_where_it_runs_narrower_vectors",)),
    threshold("GEMM_MIN_CHANNELS", "96", "128"),
    threshold("TILED_MIN_CHANNELS", "8", "6"),
    threshold("STRIDED_TILED_MIN_CHANNELS", "4", "3"),
    threshold("IMPLICIT_MIN_CHANNELS", "TILE.lanes", "TILE.lanes * 3 // 4"),
    threshold("IMPLICIT_MAX_PIXELS", "16 * 16", "14 * 14"),
    threshold("ROW_MIN_CHANNELS", "ROW_LANES * 3 // 4", "ROW_LANES * 3 // 4 - 1"),
    threshold("IMPLICIT_WEIGHT_MIN_CHANNELS", "NARROW_TILE.lanes * 5 // 8", "NARROW_TILE.lanes"),
    Mutant("selection: 'at least n channels' compares with >", "kernels/selection.py",
           (("lambda g: g.min_channels >= n", "lambda g: g.min_channels > n"),), (SELECTION,)),
    Mutant("rules: the row tiles' shape condition dropped", "kernels/cpu/rules.py",
           (("(TRANSPOSABLE, ROWS_FIT, channels_at_least(ROW_MIN_CHANNELS)),",
             "(TRANSPOSABLE, channels_at_least(ROW_MIN_CHANNELS)),"),), (SELECTION,)),
]


def _staged(path: str) -> str:
    """Where a repository path lies in the work directory's copy of the package."""
    if path.startswith("kernels/"):
        return f"src/minitorch_resnext/{path}"
    return f"src/{path}" if path.startswith("minitorch_resnext/") else path


def stage(work: Path) -> None:
    """Copy the package (kernels/ at its installed place), the tests and what they read into
    `work`, keeping modification times (Numba's cache is valid for unchanged files)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("src", "tests", "docs"):
        shutil.rmtree(work / name, ignore_errors=True)
    shutil.copytree(ROOT / "minitorch_resnext", work / "src/minitorch_resnext", ignore=skip)
    shutil.copytree(ROOT / "kernels", work / "src/minitorch_resnext/kernels", ignore=skip)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=skip)
    (work / "docs").mkdir()
    shutil.copy2(ROOT / "docs/benchmarks.md", work / "docs/benchmarks.md")
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")


def seed_cache(work: Path, base: Path) -> None:
    """Start the unmutated copy's Numba cache from the checkout's, where it has one: the copy's
    sources are the same files with the same times, so the compiled kernels are valid for it
    (Numba compiles again what is not)."""
    from numba.core.caching import _CacheLocator  # where Numba puts a source file's cache

    source = ROOT / "kernels" / "cpu"
    checkout = (Path(os.environ["NUMBA_CACHE_DIR"]) / _CacheLocator.get_suitable_cache_subpath(
        str(source / "conv.py")) if os.environ.get("NUMBA_CACHE_DIR")
        else source / "__pycache__")
    copy = base / _CacheLocator.get_suitable_cache_subpath(
        str(work / _staged("kernels/cpu/conv.py")))
    if base.exists() or not checkout.is_dir():
        return
    copy.mkdir(parents=True)
    for f in checkout.iterdir():
        if f.suffix in (".nbi", ".nbc"):
            shutil.copy2(f, copy / f.name)


def environment(work: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(work / "src"), "NUMBA_CACHE_DIR": str(cache),
            "HYPOTHESIS_PROFILE": "mutation", "PYTHONDONTWRITEBYTECODE": "1"}


def run_tests(work: Path, cache: Path, tests: tuple[str, ...], timeout: float
              ) -> tuple[str, str | None, float]:
    """(outcome, the first failing test, seconds) of the tests on the work directory's copy."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=-rf", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=work, env=environment(work, cache),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", None, time.perf_counter() - start
    seconds = time.perf_counter() - start
    failed = re.search(r"^FAILED (\S+)", done.stdout, re.M)
    if done.returncode == 0:
        return "missed", None, seconds
    if done.returncode == 1 or done.returncode < 0:
        return "caught", failed.group(1) if failed else f"exit {done.returncode}", seconds
    return "error", (done.stdout + done.stderr)[-2000:], seconds


def mutate(source: str, edits: tuple[tuple[str, str], ...]) -> str | None:
    """The source with every edit made, or None if an edit does not match exactly once."""
    for old, new in edits:
        if source.count(old) != 1:
            return None
        source = source.replace(old, new)
    return source


def check(mutants: list[Mutant], work: Path, timeout: float) -> list[dict]:
    stage(work)
    base = work / "cache" / "base"
    seed_cache(work, base)
    probe = subprocess.run(
        [sys.executable, "-c", "import minitorch_resnext.kernels.cpu as k; print(k.__file__)"],
        cwd=work, env=environment(work, base), capture_output=True, text=True, check=True)
    if not probe.stdout.strip().startswith(str(work)):
        raise SystemExit(f"the copy in {work} is not the package imported: {probe.stdout}")
    tests = tuple(dict.fromkeys(t for m in mutants for t in _test_files(m.tests)))
    print(f"unmutated copy: {' '.join(tests)} (compiles the kernels on a cold cache) ...",
          flush=True)
    outcome, failed, seconds = run_tests(work, base, tests, 3 * timeout)
    if outcome != "missed":
        raise SystemExit(f"the unmutated copy fails ({outcome}, {seconds:.0f} s): {failed}")
    print(f"unmutated copy passes ({seconds:.0f} s)", flush=True)
    results = []
    for mutant in mutants:
        target = work / _staged(mutant.path)
        mutated = mutate(target.read_text(), mutant.edits)
        record = {**asdict(mutant), "outcome": "stale", "by": None, "seconds": 0.0}
        del record["edits"]
        if mutated is not None:
            cache = work / "cache" / "mutant"
            for suffix in ("", "-boundscheck"):
                shutil.rmtree(f"{cache}{suffix}", ignore_errors=True)
                if Path(f"{base}{suffix}").exists():
                    shutil.copytree(f"{base}{suffix}", f"{cache}{suffix}")
            target.write_text(mutated)
            try:
                outcome, by, seconds = run_tests(work, cache, mutant.tests, timeout)
            finally:
                shutil.copy2(ROOT / mutant.path, target)
            record.update(outcome=outcome, by=by, seconds=round(seconds, 1))
        results.append(record)
        print(f"{record['outcome']:>8} {record['seconds']:6.0f} s  {mutant.name}"
              + (f"  <- {record['by']}" if record["outcome"] == "caught" else ""), flush=True)
    return results


def _test_files(args: tuple[str, ...]) -> list[str]:
    """The test files (without node ids) of a mutant's pytest arguments."""
    files, skip = [], False
    for arg in args:
        if skip or arg == "-k":
            skip = arg == "-k"
            continue
        files.append(arg.split("::")[0])
    return files


def table(results: list[dict]) -> str:
    lines = ["| mutant | module | caught by | seconds |", "|---|---|---|---|"]
    for r in results:
        by = r["by"].split("/")[-1] if r["outcome"] == "caught" and r["by"] else r["outcome"]
        lines.append(f"| {r['name']} | `{Path(r['path']).name}` | `{by}` | {r['seconds']:.0f} |")
    caught = sum(r["outcome"] == "caught" for r in results)
    lines.append(f"\n{caught} of {len(results)} caught "
                 f"({sum(r['seconds'] for r in results) / 60:.1f} minutes of tests)")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    """Write atomically: a reader sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="run the mutants whose name contains this (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds per mutant's tests (default 900)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "minitorch-resnext-mutation",
                        help="the copy and its Numba caches (kept between runs)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or any(s in m.name for s in args.only)]
    if args.list or not mutants:
        print("\n".join(m.name for m in MUTANTS))
        return 0 if args.list else 2
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = check(mutants, work, args.timeout)
    print(table(results))
    print(f"total {(time.perf_counter() - start) / 60:.1f} minutes")
    if args.json:
        write_json(args.json, {"mutants": results, "seconds": time.perf_counter() - start})
    return 0 if all(r["outcome"] == "caught" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
