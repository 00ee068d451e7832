"""The project's own networks, allowed in AI device folders beside ``monai.networks.nets``.

A device folder names its network in ``configs/network.json``; the loader looks the name up in
:func:`project_networks` (and in ``monai.networks.nets``) and never imports a path from the
folder. Each programme contributes its networks (``Programme.networks``); a network shared by
every programme would be defined here with plain-valued constructor arguments and added to
:data:`NETWORKS`.
"""

from __future__ import annotations

from torch import nn

NETWORKS: dict[str, type[nn.Module]] = {}
"""Networks every programme may use, by the name a ``configs/network.json`` uses."""


def project_networks() -> dict[str, type[nn.Module]]:
    """:data:`NETWORKS` and every registered programme's own networks, by name."""
    from sandbox.programmes import PROGRAMMES  # the registry sits above the agents layer

    out = dict(NETWORKS)
    for programme in PROGRAMMES.values():
        out.update(programme.networks())
    return out
