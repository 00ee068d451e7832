"""The lung programme's network: shapes, the optional stem and the centre-reading head."""

from __future__ import annotations

import pytest
import torch

from sandbox.programmes.lung_ldct.nets import NoduleCNN


@pytest.mark.parametrize("stem, centre", [(0, False), (4, False), (0, True), (4, True)])
def test_shapes_and_parameters(stem, centre):
    net = NoduleCNN(1, [4, 8], 1, stem, centre).eval()
    x = torch.zeros((3, 1, 16, 16, 16))
    assert net(x).shape == (3, 1)
    assert net.head.in_features == 8 * (2 if centre else 1)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 2 + (1 if stem else 0)
    if stem:
        assert convs[0].stride == (1, 1, 1) and convs[0].out_channels == stem


def test_the_centre_head_sees_where_a_blob_is_and_the_global_mean_does_not():
    """The same bright voxel at the centre and in a corner: a global-mean head with no padding
    effects cannot tell them apart, the centre head does."""
    torch.manual_seed(0)
    net = NoduleCNN(1, [4, 8], 1, 0, True).eval()
    centre, corner = torch.zeros((1, 1, 16, 16, 16)), torch.zeros((1, 1, 16, 16, 16))
    centre[0, 0, 7:9, 7:9, 7:9] = 1.0
    corner[0, 0, 1:3, 1:3, 1:3] = 1.0
    f_centre, f_corner = net.features(centre), net.features(corner)
    mid = (slice(None), slice(None), slice(1, 3), slice(1, 3), slice(1, 3))
    assert not torch.allclose(f_centre[mid].mean(), f_corner[mid].mean())
    assert not torch.allclose(net(centre), net(corner))


@pytest.mark.parametrize("kwargs", [{"stem": -1}, {"stem": True}, {"centre": 1}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        NoduleCNN(1, [4], 1, **kwargs)
