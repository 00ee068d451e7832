"""Agents that read images: radiologists now, AI devices next."""

from sandbox.agents.readers import Reader, ReaderProfile, draw_reader

__all__ = ["Reader", "ReaderProfile", "draw_reader"]
