"""ConvParams (intsim/ops/conv_params.py): a conv's geometry read once, defaults stated once."""
from __future__ import annotations

import pytest

from intsim.ops.conv_params import ConvParams, attr_pair


def test_defaults_fill_what_the_artifact_leaves_out():
    p = ConvParams.of({"kernel": [3, 5]})
    assert p == ConvParams(kernel=(3, 5), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                           output_padding=(0, 0))


def test_scalars_and_pairs():
    p = ConvParams.of({"kernel": 3, "stride": [2, 1], "padding": 1, "dilation": [1, 2], "groups": 4,
                       "output_padding": [1, 0]})
    assert (p.kernel, p.stride, p.padding, p.dilation, p.groups, p.output_padding) == \
        ((3, 3), (2, 1), (1, 1), (1, 2), 4, (1, 0))
    assert attr_pair(None, 7) == (7, 7) and attr_pair([4, 5]) == (4, 5)


def test_kernel_is_required():
    with pytest.raises(KeyError):
        ConvParams.of({"stride": 1})
