"""Block diagrams read the channel counts of the modules they draw."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext import models, nn
from minitorch_resnext.diagrams import ConvBox, block_graph, draw_blocks

FORMS = {"split": models.SplitBottleneck, "concat": models.ConcatBottleneck,
         "grouped": models.Bottleneck}


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


@given(st.sampled_from(sorted(FORMS)), st.sampled_from([1, 2, 4, 8, 32]), st.sampled_from([1, 2, 4]),
       st.booleans())
def test_block_graph_reads_the_convolutions(form, c, d, projection):
    inplanes = 32 if projection else 256
    downsample = nn.Sequential(nn.Conv2d(inplanes, 256, 1, bias=False), nn.BatchNorm2d(256)) \
        if projection else None
    block = FORMS[form](inplanes, 64, downsample=downsample, groups=c, base_width=d)
    graph = block_graph(block)
    assert graph.shortcut == ("projection" if projection else "identity")
    assert (graph.in_channels, graph.out_channels) == (inplanes, 256)
    if form == "grouped":
        assert graph.merge == "none" and graph.tail == ()
        assert graph.paths == ((ConvBox(inplanes, (1, 1), c * d, 1), ConvBox(c * d, (3, 3), c * d, c),
                                ConvBox(c * d, (1, 1), 256, 1)),)
        return
    first_two = (ConvBox(inplanes, (1, 1), d, 1), ConvBox(d, (3, 3), d, 1))
    if form == "split":
        assert graph.merge == "sum" and graph.tail == ()
        assert graph.paths == ((*first_two, ConvBox(d, (1, 1), 256, 1)),) * c
    else:
        assert graph.merge == "concat" and graph.tail == (ConvBox(c * d, (1, 1), 256, 1),)
        assert graph.paths == (first_two,) * c


def test_sum_of_paths_and_sequential():
    paths = nn.ModuleList(nn.Sequential(nn.Conv2d(64, 4, 3), nn.ReLU(), nn.Conv2d(4, 64, 3))
                          for _ in range(3))
    graph = block_graph(paths, shortcut=False)
    assert graph.merge == "sum" and graph.shortcut is None and len(graph.paths) == 3
    wide = block_graph(nn.Sequential(nn.Conv2d(64, 12, 3), nn.ReLU(), nn.Conv2d(12, 64, 3)))
    assert wide.merge == "none" and wide.shortcut == "identity"
    assert [b.label for b in wide.paths[0]] == ["64, 3x3, 12", "12, 3x3, 64"]
    with pytest.raises(TypeError, match="block_graph: block must be"):
        block_graph(nn.Conv2d(4, 4, 3))


def test_figure_1_shows_the_papers_labels():
    fig = draw_blocks([("ResNet", models.Bottleneck(256, 64)),
                       ("ResNeXt", models.SplitBottleneck(256, 64, groups=32, base_width=4))])
    shown = texts(fig)
    for label in ("256, 1x1, 64", "64, 3x3, 64", "64, 1x1, 256",
                  "256, 1x1, 4", "4, 3x3, 4", "4, 1x1, 256", "total 32 paths", "256-d in", "256-d out"):
        assert label in shown, label
    # 32 paths are drawn as three columns and a column of dots: 9 boxes, not 96
    assert shown.count("256, 1x1, 4") == 3


def test_grouped_form_names_its_groups():
    shown = texts(draw_blocks([("(c)", models.Bottleneck(256, 64, groups=32, base_width=4))]))
    assert "128, 3x3, 128\ngroup = 32" in shown
