"""The one exception type that reaches a user as a single line (exit code 2)."""


class SandboxInputError(ValueError):
    """Bad input from a user: a config key, a file, a run folder. The message names what and where."""
