"""Published trial figures, side by side with simulation, and calibration to them."""

from sandbox.validation.targets import TARGETS, Target, compare, load_targets

__all__ = ["TARGETS", "Target", "compare", "load_targets"]
