"""Background jobs the dashboard starts: a run, a sweep, a what-if preparation.

Each job is a ``sandbox`` command in its own process group, started by the app and stopped only
through its own handle (the process group of the PID it started). Its output goes to a log
under ``<results root>/.jobs/`` (the app writes nowhere else); progress is read from the log:
the ``progress <stage> <fraction>`` lines of ``sandbox whatif``, or the last percentage of a
tqdm bar (``sandbox run``). A cancelled run leaves no run folder (the CLI removes its temporary
folder on SIGTERM).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.compose import project_root

_PROGRESS = re.compile(r"progress (\S+) ([0-9.]+)")
_BAR = re.compile(r"(?:^|[\r\n])([^\r\n:|]*?):?\s*(\d{1,3})%\|")
_FOLDER = re.compile(r"^run folder: (.+)$", re.MULTILINE)


@dataclass
class Job:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.time)
    cancelled: bool = False

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def age(self) -> str:
        s = int(time.time() - self.started)
        return f"{s // 60} min {s % 60} s ago" if s >= 60 else f"{s} s ago"

    def output(self, tail: int = 8192) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - tail))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def progress(self) -> tuple[str, float | None]:
        """(stage, fraction done) from the log's last progress line or bar; None if unknown."""
        text = self.output()
        found = _PROGRESS.findall(text)
        if found:
            stage, f = found[-1]
            return stage, min(max(float(f), 0.0), 1.0)
        bars = _BAR.findall(text)
        if bars:
            stage, pct = bars[-1]
            return stage.strip() or "running", min(int(pct), 100) / 100.0
        return "starting", None

    def error(self) -> str:
        """The command's one-line error, if it failed."""
        for line in reversed(self.output().splitlines()):
            if line.startswith("error:"):
                return line
        return f"exit status {self.returncode}" if self.returncode else ""

    def run_folder(self) -> str | None:
        found = _FOLDER.findall(self.output())
        return found[-1].strip() if found else None

    def cancel(self) -> None:
        """Stop the job's process group (the one this job started), then reap it."""
        if not self.running:
            return
        self.cancelled = True
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start(name: str, args: list[str], results: Path) -> Job:
    """Start ``sandbox <args>`` in the background, logging under ``results/.jobs``."""
    logs = results / ".jobs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}-{int(time.time() * 1000)}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=project_root(),
            start_new_session=True,  # its own process group: cancel stops it and its children
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Job(name, args, log, proc)
