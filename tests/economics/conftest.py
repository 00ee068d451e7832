"""The economist's strategies: one world, three policies, priced (shared by the module's tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import testkit

POLICIES = ("no_screening", "soc_single_read", "soc_double_read")


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("strategies")
    for policy in POLICIES:
        argv = ["run", "runtime=quiet", "cohort.size=1500", f"runtime.out_dir={out}", "seed=4"]
        argv += [f"policy={policy}", f"runtime.run_name={policy}", "economics=us_payer"]
        assert testkit.main(argv) == 0
    return out


@pytest.fixture(scope="session")
def policies() -> tuple[str, ...]:
    return POLICIES
