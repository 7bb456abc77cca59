"""Tutorial 3's exercises, checked against blocks built by `models`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext import models
from minitorch_resnext.models.summary import shape_and_macs

TABLE_2 = {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}  # C -> d, the paper's Table 2
BUDGET = models.block_conv_params(1, 64)


def built(c: int, d: int, channels: int = 256) -> models.Bottleneck:
    """The conv2-like block with C paths of width d (base_width is d at planes = 64)."""
    return models.Bottleneck(channels, channels // 4, groups=c, base_width=d * 256 // channels)


@given(st.integers(1, 32), st.integers(1, 16), st.sampled_from([64, 256]))
def test_block_params_counts_the_built_block(t3, c, d, channels):
    expected = models.block_conv_params(c, d * 256 // channels, inplanes=channels,
                                        planes=channels // 4)
    assert built(c, d, channels).width == c * d
    assert t3.block_params(c, d, channels) == expected


@given(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]))
def test_nearest_width_is_nearest(t3, c):
    d = t3.nearest_width(c, BUDGET)
    gap = [abs(models.block_conv_params(c, w) - BUDGET) if w >= 1 else float("inf")
           for w in (d - 1, d, d + 1)]
    assert gap[1] <= min(gap[0], gap[2])


def test_nearest_width_gives_table_2(t3):
    assert {c: t3.nearest_width(c, BUDGET) for c in TABLE_2} == TABLE_2


def test_matched_width_within_three_percent(t3):
    for c, d in TABLE_2.items():
        assert t3.matched_width(c, BUDGET, 0.03) == d
    # C = 16 falls between d = 7 (-7.5 %) and d = 8 (+7.4 %): no block matches within 3 %
    assert t3.matched_width(16, BUDGET, 0.03) is None
    assert t3.matched_width(16, BUDGET, 0.08) in (7, 8)


@given(st.sampled_from(sorted(TABLE_2.items())), st.integers(1, 14))
def test_block_macs_of_the_built_block(t3, row, hw):
    c, d = row
    block = built(c, d)
    shape, macs = (1, 256, hw, hw), 0
    for conv in (block.conv1, block.conv2, block.conv3):
        shape, conv_macs = shape_and_macs(conv, shape)
        macs += conv_macs
    assert t3.block_macs(c, d, hw) == macs
