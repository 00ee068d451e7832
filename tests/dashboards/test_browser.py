"""The dashboard in a real browser: `sandbox dashboard` on a loopback port, headless Chromium
(Debian's package) driven by Playwright, every page waited for (not Streamlit's loading
skeleton), key elements checked, no console errors, screenshots kept."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testkit

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    testkit.write_runs(results, (1, 2), ("soc_double_read", "soc_single_read"), 800)
    (results / "half_written").mkdir()
    from sandbox.cli import main

    argv = ["whatif", "policy=ai_triage", "seed=7", "cohort.size=300", f"runtime.out_dir={results}"]
    assert main([*argv, f"runtime.score_cache={results / '.score_cache'}", "--prepare-only"]) == 0
    plan = ["drift=scanner_update", "drift.scanner_changes.0.day=200", "monitoring=aimcu_fallback"]
    run = ["run", "policy=ai_triage", "seed=11", "cohort.size=1500", "runtime=quiet", *plan]
    run += ["monitoring.baseline_days=60", f"runtime.out_dir={results}", "runtime.run_name=plan"]
    assert main([*run, f"runtime.score_cache={results / '.score_cache'}"]) == 0
    port = free_port()
    log = tmp_path_factory.mktemp("log") / "dashboard.log"
    cmd = [str(Path(sys.executable).parent / "sandbox"), "dashboard", "--runs", str(results)]
    proc = subprocess.Popen(
        [*cmd, "--host", HOST, "--port", str(port)],
        cwd=ROOT,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{HOST}:{port}"
    t0 = time.monotonic()
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() - t0 < 120, log.read_text()
            time.sleep(0.3)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser tests need Debian's chromium package (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def test_every_page_renders_in_a_real_browser(server, browser, tmp_path_factory):
    shots = tmp_path_factory.mktemp("screenshots")
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    # What if? opens first: this cohort is not prepared; the prepared one answers at once
    page.get_by_text("not prepared yet").wait_for(timeout=90_000)
    people = page.get_by_label("people")
    people.fill("300")
    people.press("Enter")
    page.get_by_text("triage against standard of care").wait_for(timeout=60_000)
    page.locator(".vega-embed").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "cancers found" in body and "human reads" in body and "answered in" in body
    page.screenshot(path=shots / "whatif.png", full_page=True)
    # the confirming full run, in the background, then side by side with the fast answer
    page.get_by_role("button", name="Run it event by event (background)").click()
    page.get_by_text("Full run done").wait_for(timeout=240_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "whatif-confirmed.png", full_page=True)

    page.get_by_role("link", name="Runs").click()
    page.get_by_text("Run folders (7)").wait_for(timeout=90_000)
    # the table is drawn on a canvas; the broken folder's warning is text
    page.get_by_text("1 folder(s) are not complete run folders").first.wait_for(timeout=30_000)
    page.get_by_text("Start a run or a sweep").wait_for(timeout=30_000)
    page.get_by_text("digest").first.wait_for(timeout=60_000)  # the device card
    page.screenshot(path=shots / "runs.png", full_page=True)

    page.get_by_role("link", name="Compare").click()
    page.get_by_text("verdict:").first.wait_for(timeout=120_000)
    body = page.inner_text("body")
    assert "A: soc_double_read, seeds 1, 2" in body and "B: soc_single_read, seeds 1, 2" in body
    assert "2 seeds pooled" in body
    page.locator("[data-testid=stImage] img, [data-testid=stPyplot] img, img").first.wait_for(
        timeout=60_000
    )  # the forest plot
    page.screenshot(path=shots / "compare.png", full_page=True)

    page.get_by_role("link", name="Equity").click()
    page.get_by_text("reference group").first.wait_for(timeout=60_000)
    page.locator(".vega-embed").first.wait_for(timeout=60_000)  # the chart
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "equity.png", full_page=True)

    page.get_by_role("link", name="Workload and capacity").click()
    page.get_by_text("exams awaiting a report").first.wait_for(timeout=60_000)
    page.locator(".vega-embed").nth(2).wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "workload.png", full_page=True)

    page.get_by_role("link", name="Safety").click()
    page.get_by_text("Stage shift").first.wait_for(timeout=60_000)
    page.locator(".vega-embed").nth(1).wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "safety.png", full_page=True)

    page.get_by_role("link", name="Surveillance").click()
    page.get_by_text("days after it began").first.wait_for(timeout=60_000)
    page.locator("img").first.wait_for(timeout=60_000)  # the charts
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "surveillance.png", full_page=True)

    page.get_by_role("link", name="Cost-effectiveness").click()
    page.get_by_text("Strategies and increments").first.wait_for(timeout=120_000)
    page.locator(".vega-embed").first.wait_for(timeout=60_000)  # the cost-effectiveness plane
    page.wait_for_timeout(1000)
    assert "highest net monetary benefit" in page.inner_text("body")
    page.screenshot(path=shots / "economics.png", full_page=True)
    assert not errors, errors
    print(f"screenshots: {shots}")
