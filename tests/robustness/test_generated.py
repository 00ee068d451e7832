"""Generated inputs (hypothesis): whatever a config section or a run folder holds, the answer is
a valid object or one line naming the problem, never a traceback."""

from __future__ import annotations

import json

import polars as pl
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.config import Policy, Runtime, Site
from sandbox.errors import SandboxInputError
from sandbox.runfolder import read_run
from sandbox.typed import build

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    Policy: ["name", "role", "reading", "discordance", "threshold", "audit_fraction"],
    Runtime: ["out_dir", "run_name", "site_block_size", "ai_batch_size", "score_cache"],
    Site: ["name", "share", "scanner", "scanners", "readers", "reading_hours_per_day"],
}


def mappings(cls):
    keys = st.sampled_from([*FIELDS[cls], "unknown"])
    return st.dictionaries(keys, values, max_size=6)


@settings(max_examples=150, deadline=None)
@given(cls=st.sampled_from(list(FIELDS)), data=st.data())
def test_any_config_section_is_an_object_or_one_line(cls, data):
    mapping = data.draw(mappings(cls))
    try:
        build(cls, mapping, "x")
    except SandboxInputError as e:
        assert "\n" not in str(e) and str(e).startswith("config key 'x")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(manifest=values, config=values)
def test_any_run_folder_is_read_or_refused_in_one_line(manifest, config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    pl.DataFrame(
        {
            "site": ["all"],
            "subgroup": ["all"],
            "round": ["all"],
            "metric": ["screens"],
            "value": [1.0],
            "lo": [0.5],
            "hi": [2.0],
        }
    ).write_parquet(folder / "metrics.parquet")
    try:
        run = read_run(folder)
    except SandboxInputError as e:
        assert "\n" not in str(e) and str(folder) in str(e)
    else:
        assert isinstance(run["manifest"], dict) and isinstance(run["config"], dict)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spec=st.dictionaries(
        st.sampled_from(
            ["baseline", "candidate", "primary", "secondary", "replicates", "plot", "other"]
        ),
        values,
        max_size=6,
    )
)
def test_any_comparison_file_is_a_spec_or_one_line(spec, tmp_path_factory):
    from sandbox.comparison import load_spec

    f = tmp_path_factory.mktemp("spec") / "c.yaml"
    f.write_text(yaml.safe_dump(spec, allow_unicode=True))
    try:
        load_spec(f)
    except SandboxInputError as e:
        assert "\n" not in str(e) and str(e).startswith(str(f)), str(e)
