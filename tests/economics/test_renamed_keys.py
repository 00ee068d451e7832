"""Price lists, PSA paths and run folders written with a key's old name (``terminal_lung_cancer``)
load and price as with the new one (``terminal_cancer``); a price list says what it prices."""

from __future__ import annotations

import pytest

from sandbox.economics.distributions import parse_params
from sandbox.economics.psa import with_values
from sandbox.economics.report import load_preset
from sandbox.errors import SandboxInputError


@pytest.fixture
def old_style(project_root, tmp_path):
    """us_payer as it was written before the rename: the old key, the old PSA path, no
    ``programme``."""
    text = (project_root / "conf" / "economics" / "us_payer.yaml").read_text()
    assert "  terminal_cancer: 60000.0" in text and "programme: lung_ldct\n" in text
    old = text.replace("terminal_cancer", "terminal_lung_cancer").replace(
        "programme: lung_ldct\n", ""
    )
    path = tmp_path / "old.yaml"
    path.write_text(old)
    return path


def test_the_old_key_prices_as_the_new_one(old_style):
    econ, new = load_preset(str(old_style)), load_preset("us_payer")
    assert econ.programme == "lung_ldct"  # a price list that does not say prices lung screening
    assert econ.costs == new.costs and econ.utilities == new.utilities
    params = parse_params(econ.psa, econ.costs, econ.utilities)
    old = next(p for p in params if p.path == "costs.terminal_lung_cancer")
    assert old.mean == 60000.0
    costs, _ = with_values(econ.costs, econ.utilities, {old.path: 1234.0})
    assert costs.terminal_cancer == 1234.0


def test_both_names_at_once_are_refused_in_one_line(old_style, tmp_path):
    text = old_style.read_text().replace(
        "  terminal_lung_cancer: 60000.0", "  terminal_lung_cancer: 60000.0\n  terminal_cancer: 1.0"
    )
    both = tmp_path / "both.yaml"
    both.write_text(text)
    with pytest.raises(SandboxInputError, match="terminal_lung_cancer': is the old name") as e:
        load_preset(str(both))
    assert "\n" not in str(e.value)
