"""Agents that read images: radiologists, and AI devices loaded from their folders.

The AI-device names are imported on first use, so that code which only needs readers does not
pay for importing torch and MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.agents.readers import Reader, ReaderProfile, draw_reader

if TYPE_CHECKING:
    from sandbox.agents.bundle import (
        LoadedModel,
        allowed_networks,
        file_digest,
        load_bundle,
        probe_bundle,
    )
    from sandbox.agents.nets import NETWORKS, project_networks

_LAZY = {
    "LoadedModel": "sandbox.agents.bundle",
    "allowed_networks": "sandbox.agents.bundle",
    "file_digest": "sandbox.agents.bundle",
    "load_bundle": "sandbox.agents.bundle",
    "probe_bundle": "sandbox.agents.bundle",
    "NETWORKS": "sandbox.agents.nets",
    "project_networks": "sandbox.agents.nets",
}

__all__ = [
    "NETWORKS",
    "LoadedModel",
    "Reader",
    "ReaderProfile",
    "allowed_networks",
    "draw_reader",
    "file_digest",
    "load_bundle",
    "probe_bundle",
    "project_networks",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
