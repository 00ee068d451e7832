"""In-silico regulatory sandbox for AI in medical imaging screening."""

__version__ = "0.1.0"
