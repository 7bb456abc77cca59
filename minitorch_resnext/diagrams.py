"""Block diagrams in the style of the paper's Figures 1, 3 and 4, read from the modules.

`block_graph(block)` walks a bottleneck of any of the three forms of `models` (or a
`ModuleList` of paths that are summed, or a `Sequential`) and returns what the paper draws:
each path's convolutions as boxes "in, kxk, out", how the paths merge (a sum or a
concatenation), the convolutions after the merge and the shortcut. `draw_blocks` draws
blocks side by side with matplotlib. Every number in a box comes from a `Conv2d` of the
module drawn, so a diagram cannot disagree with the model. Batch normalization and ReLU
are left out, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch

from .models import Bottleneck, ConcatBottleneck, SplitBottleneck
from .nn import Conv2d, Module, ModuleList, Sequential

# layout, in data units: column and layer spacing, box size, radius of a "+" node
DX, DY, BOX_W, BOX_H, NODE_R = 1.7, 1.0, 1.45, 0.52, 0.17


@dataclass(frozen=True)
class ConvBox:
    """One convolution as the paper labels it: input channels, kernel, output channels."""

    in_channels: int
    kernel: tuple[int, int]
    out_channels: int
    groups: int

    @classmethod
    def of(cls, conv: Conv2d) -> ConvBox:
        """The box of a `Conv2d` layer."""
        return cls(conv.in_channels, tuple(conv.kernel_size), conv.out_channels, conv.groups)

    @property
    def label(self) -> str:
        """E.g. "256, 1x1, 4", or "128, 3x3, 128" over "group = 32" for a grouped one."""
        kh, kw = self.kernel
        text = f"{self.in_channels}, {kh}x{kw}, {self.out_channels}"
        return text + (f"\ngroup = {self.groups}" if self.groups > 1 else "")


@dataclass(frozen=True)
class BlockGraph:
    """What a block diagram shows.

    `merge` is "sum" or "concat" for several paths and "none" for a single one; `tail` holds
    the convolutions after the merge; `shortcut` is "identity", "projection" or None.
    """

    paths: tuple[tuple[ConvBox, ...], ...]
    merge: str
    tail: tuple[ConvBox, ...]
    shortcut: str | None

    @property
    def in_channels(self) -> int:
        """Channels entering the block."""
        return self.paths[0][0].in_channels

    @property
    def out_channels(self) -> int:
        """Channels leaving the block."""
        return (self.tail or self.paths[0])[-1].out_channels


def _convs(module: Module) -> tuple[ConvBox, ...]:
    return tuple(ConvBox.of(m) for m in module.modules() if isinstance(m, Conv2d))


def block_graph(block: Module, shortcut: bool = True) -> BlockGraph:
    """The diagram of a block: a bottleneck of `models` (form (a), (b) or (c) of Figure 3),
    a `ModuleList` of paths whose outputs are summed, or a `Sequential` (one path).
    `shortcut` applies to the last two, which do not say whether a residual is added."""
    if isinstance(block, SplitBottleneck | ConcatBottleneck | Bottleneck):
        kind = "identity" if block.downsample is None else "projection"
        if isinstance(block, Bottleneck):
            return BlockGraph((_convs(Sequential(block.conv1, block.conv2, block.conv3)),),
                              "none", (), kind)
        paths = tuple(_convs(path) for path in block.paths)
        if isinstance(block, SplitBottleneck):
            return BlockGraph(paths, "sum", (), kind)
        return BlockGraph(paths, "concat", (ConvBox.of(block.conv3),), kind)
    residual = "identity" if shortcut else None
    if isinstance(block, ModuleList):
        return BlockGraph(tuple(_convs(path) for path in block), "sum", (), residual)
    if isinstance(block, Sequential):
        return BlockGraph((_convs(block),), "none", (), residual)
    raise TypeError(f"block_graph: block must be a bottleneck of models, a ModuleList of paths "
                    f"or a Sequential, got {type(block).__name__}")


def _shown_paths(graph: BlockGraph, max_paths: int) -> list[tuple[ConvBox, ...] | None]:
    """The paths drawn as columns; None is the column of dots standing for the hidden ones."""
    paths = list(graph.paths)
    if len(paths) <= max_paths:
        return paths
    return [*paths[:max_paths - 2], None, paths[-1]]


def _width(columns: int) -> float:
    """Width of a diagram of `columns` columns in data units (its x limits)."""
    return (columns - 1) * DX + BOX_W + 0.95


def _box(ax: Axes, x: float, y: float, text: str, width: float = BOX_W) -> None:
    ax.add_patch(FancyBboxPatch((x - width / 2, y - BOX_H / 2), width, BOX_H,
                                boxstyle="round,pad=0.03", facecolor="white", edgecolor="black"))
    ax.text(x, y, text, ha="center", va="center", fontsize=8, linespacing=1.1)


def _node(ax: Axes, x: float, y: float) -> None:
    ax.add_patch(Circle((x, y), NODE_R, facecolor="white", edgecolor="black"))
    ax.text(x, y, "+", ha="center", va="center", fontsize=10)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "lw": 0.9, "color": "black",
                            "shrinkA": 0, "shrinkB": 0, "mutation_scale": 8})


def draw_block(ax: Axes, graph: BlockGraph, title: str = "", max_paths: int = 4) -> None:
    """Draw one block into `ax`, top to bottom; more than `max_paths` paths are drawn as the
    first few, a column of dots and the last, with the total written underneath."""
    columns = _shown_paths(graph, max_paths)
    xs = [i * DX for i in range(len(columns))]
    cx = sum(xs) / len(xs)
    depth = max(len(p) for p in graph.paths)
    top = 0.0
    ax.text(cx, top, f"{graph.in_channels}-d in", ha="center", va="bottom", fontsize=9)
    last_y = -depth * DY
    for x, path in zip(xs, columns):
        if path is None:
            for j in range(depth):
                ax.text(x, -(j + 1) * DY, "...", ha="center", va="center", fontsize=12)
            continue
        _arrow(ax, (cx, top), (x, -DY + BOX_H / 2))
        for j, box in enumerate(path):
            y = -(j + 1) * DY
            _box(ax, x, y, box.label)
            if j:
                _arrow(ax, (x, y + DY - BOX_H / 2), (x, y + BOX_H / 2))
    if None in columns:
        ax.text(xs[columns.index(None)], last_y - 0.5 * DY, f"total {len(graph.paths)} paths",
                ha="center", va="center", fontsize=8, style="italic",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    y = last_y
    if graph.merge != "none":
        y -= DY
        ends = [(x, last_y - BOX_H / 2) for x, path in zip(xs, columns) if path is not None]
        if graph.merge == "sum":
            _node(ax, cx, y)
            for end in ends:
                _arrow(ax, end, (cx, y + NODE_R))
            below = y - NODE_R
        else:
            _box(ax, cx, y, "concatenate", width=xs[-1] - xs[0] + BOX_W)
            for x, end_y in ends:
                _arrow(ax, (x, end_y), (x, y + BOX_H / 2))
            below = y - BOX_H / 2
    else:
        below = y - BOX_H / 2
    for box in graph.tail:
        y -= DY
        _box(ax, cx, y, box.label)
        _arrow(ax, (cx, below), (cx, y + BOX_H / 2))
        below = y - BOX_H / 2
    if graph.shortcut is not None:
        y -= DY
        _node(ax, cx, y)
        _arrow(ax, (cx, below), (cx, y + NODE_R))
        side = xs[-1] + BOX_W / 2 + 0.35
        ax.plot([cx + 0.35, side, side], [top + 0.12, top + 0.12, y], color="black", lw=0.9)
        _arrow(ax, (side, y), (cx + NODE_R, y))
        ax.text(side + 0.08, (top + y) / 2, graph.shortcut, rotation=90, ha="left", va="center",
                fontsize=8)
        below = y - NODE_R
    _arrow(ax, (cx, below), (cx, y - 0.55 * DY))
    ax.text(cx, y - 0.6 * DY, f"{graph.out_channels}-d out", ha="center", va="top", fontsize=9)
    ax.set_xlim(xs[0] - BOX_W / 2 - 0.2, xs[0] - BOX_W / 2 - 0.2 + _width(len(xs)))
    ax.set_ylim(y - 1.0 * DY, top + 0.45)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)


def draw_blocks(panels: Sequence[tuple[str, Module]], suptitle: str = "", shortcut: bool = True,
                max_paths: int = 4) -> Figure:
    """A figure with one diagram per (title, block), side by side, the widths in proportion."""
    graphs = [(title, block_graph(block, shortcut)) for title, block in panels]
    widths = [_width(len(_shown_paths(g, max_paths))) for _, g in graphs]
    heights = [max(len(p) for p in g.paths) + len(g.tail) + (g.merge != "none")
               + (g.shortcut is not None) + 2.5 for _, g in graphs]
    fig = Figure(figsize=(sum(widths) * 1.05, max(heights) * 1.05), layout="constrained")
    axes = fig.subplots(1, len(graphs), gridspec_kw={"width_ratios": widths}, squeeze=False)[0]
    for ax, (title, graph) in zip(axes, graphs):
        draw_block(ax, graph, title, max_paths)
    bottom = min(ax.get_ylim()[0] for ax in axes)
    for ax in axes:  # one vertical scale: the inputs of all blocks on one line
        ax.set_ylim(bottom, ax.get_ylim()[1])
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig
