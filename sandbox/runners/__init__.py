"""Runners: how units of work are executed (serially here; Ray plugs in beside it)."""

from sandbox.runners.local import RunResult, run, simulate, site_blocks

__all__ = ["RunResult", "run", "simulate", "site_blocks"]
