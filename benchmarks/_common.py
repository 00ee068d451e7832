"""Shared helpers for the benchmark scripts: machine description, tables, JSON results.

Not a benchmark itself. Each script in this folder imports it as ``_common`` (the script's own
folder is first on ``sys.path`` when run as ``python benchmarks/<name>.py``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev() -> str:
    """The project's commit, with "+dirty" if sandbox/, conf/, scenarios/ or agents/ changed."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        # "+dirty" when the simulation code or its inputs differ from the commit
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "sandbox", "conf", "scenarios", "agents"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def other_busy_processes() -> list[str]:
    """Command lines of other processes using CPU right now (load that skews timings)."""
    me = os.getpid()
    busy = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (me, os.getppid()):
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (
                (proc / "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
        except OSError:
            continue
        if stat[0] == "R" and cmd:
            busy.append(cmd[:120])
    return busy


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "other_running_processes": other_busy_processes(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "code_version": git_rev(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size (MiB) of this process or (RUSAGE_CHILDREN) its largest child."""
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table (first column left, the rest right)."""
    cells = [[_fmt(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.1:
            return f"{v:.2f}"
        return f"{v:.4f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def write_json(out_dir: str | Path, name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``out_dir/name`` (pretty JSON) and return the path."""
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
