"""AI device folders: loading, digests, scoring, and every refusal (invariant 7)."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from sandbox.agents import (
    LoadedModel,
    allowed_networks,
    file_digest,
    load_bundle,
    probe_bundle,
    project_networks,
)
from sandbox.agents.bundle import _constructor_args
from sandbox.errors import SandboxInputError

SIDE = 8
CLASSIFIER = {
    "name": "Classifier",
    "args": {
        "in_shape": [1, SIDE, SIDE, SIDE],
        "classes": 1,
        "channels": [2, 4],
        "strides": [2, 2],
    },
}
METADATA: dict[str, Any] = {
    "name": "tiny_nodule_ai",
    "version": "0.1.0",
    "intended_use": "test device: scores one LDCT exam's most suspicious finding",
    "input": {
        "shape": [1, SIDE, SIDE, SIDE],
        "dtype": "float32",
        "units": "HU",
        "spacing_mm": 1.0,
        "window_hu": [-1000, 400],
    },
    "output": {
        "shape": [1],
        "meaning": "probability that the exam's most suspicious finding is malignant",
        "activation": "sigmoid",
    },
    "training_data": {"scanners": ["vendor_a_64"], "population": "synthetic", "cases": 10},
    "performance": {"auc": 0.5},
}


def build_network(config: dict[str, Any]) -> torch.nn.Module:
    """The network a config names, built directly (the tests' reference)."""
    return allowed_networks()[config["name"]](**config["args"])


def state_dict(config: dict[str, Any] = CLASSIFIER, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights for the named network, from a seeded initialisation."""
    generator = torch.Generator().manual_seed(seed)
    net = build_network(config)
    parameters = {name for name, _ in net.named_parameters()}
    out = {}
    for k, v in net.state_dict().items():
        if k in parameters:  # buffers (running statistics) keep their initial values
            v = torch.randn(v.shape, generator=generator) * 0.1
        out[k] = v.clone().contiguous()
    return out


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def make_bundle(
    folder: Path,
    *,
    network: dict[str, Any] = CLASSIFIER,
    metadata: dict[str, Any] = METADATA,
    weights: dict[str, torch.Tensor] | None = None,
    fmt: str = "safetensors",
) -> Path:
    """Write a device folder; ``weights`` default to the network's seeded initialisation."""
    write_json(folder / "configs" / "network.json", network)
    write_json(folder / "configs" / "metadata.json", metadata)
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    (folder / "docs" / "README.md").write_text("# tiny test device\n")
    (folder / "models").mkdir(parents=True, exist_ok=True)
    sd = state_dict(network) if weights is None else weights
    if fmt == "safetensors":
        safetensors.torch.save_file(sd, str(folder / "models" / "model.safetensors"))
    elif fmt == "pt":
        torch.save(sd, folder / "models" / "model.pt")
    return folder


def refused(path: Path, *fragments: str) -> str:
    """Load ``path``, expect a one-line SandboxInputError naming the folder and ``fragments``."""
    with pytest.raises(SandboxInputError) as info:
        load_bundle(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith("agent folder "), msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def with_key(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with ``dotted`` set to ``value`` (or removed if value is ...)."""
    out = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "device")


# --- loading and scoring --------------------------------------------------------------------


def test_valid_safetensors_bundle_loads_and_scores(bundle):
    model = load_bundle(bundle)
    assert isinstance(model, LoadedModel)
    assert (model.name, model.version) == ("tiny_nodule_ai", "0.1.0")
    assert model.input_shape == (1, SIDE, SIDE, SIDE)
    assert model.window_hu == (-1000.0, 400.0)
    assert model.weights_file.name == "model.safetensors"
    assert model.model_card.startswith("# tiny test device")
    assert not model.network.training
    assert not any(p.requires_grad for p in model.network.parameters())
    batch = torch.linspace(-1500, 2000, 3 * SIDE**3).reshape(3, 1, SIDE, SIDE, SIDE)
    scores = model.score(batch)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    assert bool(((scores >= 0) & (scores <= 1)).all())


def test_score_clips_to_the_window_and_applies_the_sigmoid(bundle):
    model = load_bundle(bundle)
    below = torch.full((1, 1, SIDE, SIDE, SIDE), -3000.0)
    at_low = torch.full((1, 1, SIDE, SIDE, SIDE), -1000.0)
    assert torch.equal(model.score(below), model.score(at_low))
    reference = build_network(CLASSIFIER).eval()
    reference.load_state_dict(state_dict())
    with torch.no_grad():
        expected = torch.sigmoid(reference(torch.zeros_like(at_low))).reshape(1)
    assert torch.allclose(model.score(at_low), expected, atol=1e-6)


def test_score_refuses_a_batch_of_the_wrong_shape(bundle):
    model = load_bundle(bundle)
    with pytest.raises(ValueError, match="batches of shape"):
        model.score(torch.zeros(2, 1, SIDE, SIDE))


def test_probe_bundle_is_the_cpu_check(bundle):
    model = probe_bundle(bundle)
    assert model.device == torch.device("cpu")


def test_digest_is_stable_and_follows_weights_and_config(tmp_path):
    a = load_bundle(make_bundle(tmp_path / "a"))
    again = load_bundle(tmp_path / "a")
    assert a.digest == again.digest and len(a.digest) == 64
    assert a.weights_digest == file_digest(a.weights_file)
    # the same content, formatted differently, is the same device
    reformatted = make_bundle(tmp_path / "b")
    raw = json.loads((reformatted / "configs" / "metadata.json").read_text())
    (reformatted / "configs" / "metadata.json").write_text(json.dumps(raw, sort_keys=True))
    assert load_bundle(reformatted).digest == a.digest
    # one weight changed
    sd = state_dict()
    first = next(iter(sd))
    sd[first] = sd[first].clone()
    sd[first].view(-1)[0] += 1.0
    changed = load_bundle(make_bundle(tmp_path / "c", weights=sd))
    assert changed.digest != a.digest and changed.weights_digest != a.weights_digest
    assert changed.metadata_digest == a.metadata_digest
    # metadata changed, weights not
    newer = load_bundle(make_bundle(tmp_path / "d", metadata=with_key(METADATA, "version", "0.2")))
    assert newer.digest != a.digest and newer.weights_digest == a.weights_digest


def test_pt_state_dict_bundle_loads_and_safetensors_wins(tmp_path):
    st = load_bundle(make_bundle(tmp_path / "st"))
    pt = load_bundle(make_bundle(tmp_path / "pt", fmt="pt"))
    assert pt.weights_file.name == "model.pt"
    batch = torch.zeros(2, 1, SIDE, SIDE, SIDE)
    assert torch.equal(pt.score(batch), st.score(batch))
    both = make_bundle(tmp_path / "pt")  # now both files exist
    assert load_bundle(both).weights_file.name == "model.safetensors"


def test_project_network_loads(tmp_path):
    assert "NoduleCNN" in project_networks()
    config = {"name": "NoduleCNN", "args": {"in_channels": 1, "channels": [2, 4]}}
    model = load_bundle(make_bundle(tmp_path / "own", network=config))
    assert model.score(torch.zeros(4, 1, SIDE, SIDE, SIDE)).shape == (4,)


def test_allow_list_is_monai_networks_and_the_projects_own():
    networks = allowed_networks()
    assert {"Classifier", "DenseNet121", "NoduleCNN"} <= set(networks)
    assert not {"Linear", "Module", "Sequential", "Transchex"} & set(networks)
    assert all(issubclass(cls, torch.nn.Module) for cls in networks.values())
    import monai.networks.nets as monai_nets

    assert not set(project_networks()) & set(vars(monai_nets)), (
        "a project network shadows a MONAI one"
    )


# --- malicious pickles ----------------------------------------------------------------------


class _Shell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _pickled(payload: object, serializer: str) -> bytes:
    if serializer == "torch.save":
        buffer = io.BytesIO()
        torch.save({**state_dict(), "extra": payload}, buffer)
        return buffer.getvalue()
    # protocol 2 has no frames, so the refusal comes at the GLOBAL that names the callable
    return pickle.dumps(payload, protocol=2 if serializer == "pickle-2" else None)


@pytest.mark.parametrize("serializer", ["torch.save", "pickle", "pickle-2"])
@pytest.mark.parametrize("kind", [_Shell, _Exec])
def test_malicious_pickle_does_not_execute(tmp_path, serializer, kind):
    # the payload is live: plain unpickling runs it
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(kind(control)))
    assert control.exists()
    marker = tmp_path / "pwned"
    folder = make_bundle(tmp_path / "evil", fmt="none")
    (folder / "models" / "model.pt").write_bytes(_pickled(kind(marker), serializer))
    with pytest.raises(SandboxInputError) as info:
        load_bundle(folder)
    assert not marker.exists(), "loading the folder ran its code"
    msg = str(info.value)
    assert "\n" not in msg and "models/model.pt" in msg, msg
    assert "refused to unpickle" in msg and "weights_only" in msg, msg


# --- refusals -------------------------------------------------------------------------------


def test_missing_folder_and_a_file_instead(tmp_path):
    refused(tmp_path / "nowhere", "does not exist")
    (tmp_path / "file").write_text("x")
    refused(tmp_path / "file", "is not a folder")


@pytest.mark.parametrize("rel", ["configs/metadata.json", "configs/network.json"])
def test_missing_or_malformed_json(bundle, rel):
    path = bundle / rel
    path.write_text('{"name": "x",')
    refused(bundle, rel, "not valid JSON", "line 1")
    path.write_text('["a list"]')
    refused(bundle, rel, "expected a JSON object")
    path.write_text('{"name": NaN}')
    refused(bundle, rel, "NaN")
    path.unlink()
    refused(bundle, rel, "is missing")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("intended_use", ..., "key 'intended_use': is required"),
        ("input.window_hu", ..., "key 'input.window': give the input's window once"),
        ("input.window_hu", [400, -1000], "key 'input.window_hu'"),
        ("input.shape", [SIDE, SIDE, SIDE], "key 'input.shape'"),
        ("input.units", "mm", "key 'input.units'"),
        ("output.activation", "softmax", "key 'output.activation'"),
        ("output.shape", [2], "key 'output.shape'"),
        ("training_data.cases", ..., "key 'training_data.cases': is required"),
        ("performance", "great", "key 'performance'"),
        ("output.aggregation", "mean", "key 'output.aggregation'"),
        ("output.view_match_mm", 0, "key 'output.view_match_mm'"),
        ("output.view_match_mm", "far", "key 'output.view_match_mm'"),
    ],
)
def test_bad_metadata_names_the_key(tmp_path, key, value, fragment):
    folder = make_bundle(tmp_path / "d", metadata=with_key(METADATA, key, value))
    refused(folder, "configs/metadata.json", fragment)


CALIBRATION = {
    "levels": [0.0, 0.5, 0.9, 1.0],
    "pooled": [0.0, 0.2, 0.6, 1.0],
    "systems": {"vendor_a": [0.0, 0.4, 0.8, 1.0], "vendor_b": [0.0, 0.1, 0.3, 0.9]},
}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("levels", [0.0, 0.9, 0.5, 1.0], "key 'output.calibration.levels': must rise from 0 to 1"),
        ("levels", [0.1, 0.5, 0.9, 1.0], "must rise from 0 to 1"),
        ("levels", [0.0], "1 levels; give 2 to"),
        ("pooled", [0.0, 0.2, 0.6], "key 'output.calibration.pooled': 3 quantiles for 4 levels"),
        ("pooled", [0.0, 0.6, 0.2, 1.0], "quantiles must not decrease"),
        ("pooled", [0.0, 0.2, 0.6, 1.5], "quantiles must be scores in [0, 1]"),
        ("systems", {}, "key 'output.calibration.systems': names no system"),
        ("systems", {"v": [0.3, 0.3, 0.3, 0.3]}, "key 'output.calibration.systems.v'"),
        ("systems", {"v": [0.0, 0.1, 0.3]}, "3 quantiles for 4 levels"),
        ("systems", {"v": "0.5"}, "key 'output.calibration.systems.v'"),
    ],
)
def test_a_bad_calibration_is_refused_in_one_line(tmp_path, key, value, fragment):
    metadata = with_key(METADATA, "output.calibration", with_key(CALIBRATION, key, value))
    refused(make_bundle(tmp_path / "d", metadata=metadata), "configs/metadata.json", fragment)


def test_calibration_puts_each_system_on_the_pooled_scale(tmp_path):
    """A system's own quantile maps to the pooled one at the same level, linearly between
    them; a system the calibration does not name keeps the network's score."""
    metadata = with_key(METADATA, "output.calibration", CALIBRATION)
    cal = load_bundle(make_bundle(tmp_path / "d", metadata=metadata)).calibration
    a = cal.apply(np.array([0.0, 0.4, 0.6, 0.8, 1.0]), "vendor_a")
    assert np.allclose(a, [0.0, 0.2, 0.4, 0.6, 1.0])
    assert np.allclose(cal.apply(np.array([0.1, 0.3, 0.6]), "vendor_b"), [0.2, 0.6, 0.8])
    assert np.allclose(cal.apply(np.array([0.1, 0.3]), "vendor_c"), [0.1, 0.3])
    # tied quantiles: a tied score is at its levels' mean
    tied = {"levels": [0.0, 0.5, 1.0], "pooled": [0.0, 0.5, 1.0], "systems": {"v": [0.2, 0.2, 0.8]}}
    metadata = with_key(METADATA, "output.calibration", tied)
    cal = load_bundle(make_bundle(tmp_path / "e", metadata=metadata)).calibration
    assert np.allclose(cal.apply(np.array([0.2, 0.5]), "v"), [0.25, 0.625])
    assert load_bundle(make_bundle(tmp_path / "f")).calibration is None


def test_extra_metadata_keys_are_kept(tmp_path):
    extra = {**METADATA, "license": "Apache-2.0", "authors": ["x"]}
    assert load_bundle(make_bundle(tmp_path / "d", metadata=extra)).metadata["license"]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("os.system", "dotted path"),
        ("torch.nn.Linear", "dotted path"),
        ("../x", "a file path"),
        ("Linear", "is not allowed"),
        ("eval", "is not allowed"),
        ("__builtins__", "not a plain class name"),
        ("classifier", "did you mean 'Classifier'"),
        ("Transchex", "downloads"),
    ],
)
def test_network_not_on_the_allow_list_is_refused(tmp_path, name, fragment):
    folder = make_bundle(tmp_path / "d", weights={})
    write_json(folder / "configs" / "network.json", {"name": name, "args": {}})
    msg = refused(folder, "configs/network.json", repr(name), fragment)
    assert "monai.networks.nets.*" in msg and "NoduleCNN" in msg


@pytest.mark.parametrize(
    ("rel", "data"),
    [
        ("configs/network.json", with_key(CLASSIFIER, "args.act", "$import os")),
        ("configs/network.json", with_key(CLASSIFIER, "args.channels", [2, "%configs/x.json"])),
        ("configs/network.json", with_key(CLASSIFIER, "name", "@network_def")),
        ("configs/metadata.json", with_key(METADATA, "performance", {"auc": "$__import__('os')"})),
    ],
)
def test_expression_strings_are_refused(tmp_path, rel, data):
    folder = make_bundle(tmp_path / "d")
    write_json(folder / rel, data)
    refused(folder, rel, "MONAI expression")


def test_network_json_unknown_key(tmp_path):
    folder = make_bundle(tmp_path / "d")
    write_json(folder / "configs" / "network.json", {**CLASSIFIER, "_target_": "x"})
    refused(folder, "configs/network.json", "key '_target_': unknown key")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({**CLASSIFIER["args"], "bogus": 1}, "bogus"),
        ({**CLASSIFIER["args"], "channels": "abc"}, "rejected its args"),
        ({"in_shape": [1, SIDE, SIDE, SIDE]}, "rejected its args"),
        ({**CLASSIFIER["args"], "pretrained": True}, "arg 'pretrained'"),
    ],
)
def test_network_args_the_constructor_rejects(tmp_path, args, fragment):
    folder = make_bundle(tmp_path / "d")
    write_json(folder / "configs" / "network.json", {"name": "Classifier", "args": args})
    refused(folder, "configs/network.json", fragment)


def test_pretrained_defaults_are_turned_off():
    from monai.networks.nets import EfficientNetBN

    kwargs = _constructor_args(EfficientNetBN, {"model_name": "efficientnet-b0"})
    assert kwargs == {"model_name": "efficientnet-b0", "pretrained": False}
    with pytest.raises(ValueError, match="pretrained_url"):
        _constructor_args(EfficientNetBN, {"pretrained_url": "http://x/w.pt"})


def test_weights_missing(tmp_path):
    folder = make_bundle(tmp_path / "d", fmt="none")
    refused(folder, "models/", "no weights")


def test_weights_that_do_not_fit(tmp_path):
    sd = state_dict()
    first = next(iter(sd))
    missing = {k: v for k, v in sd.items() if k != first}
    refused(make_bundle(tmp_path / "a", weights=missing), f"missing key '{first}'")
    extra = {**sd, "surplus.weight": torch.zeros(1)}
    refused(make_bundle(tmp_path / "b", weights=extra), "unexpected key 'surplus.weight'")
    resized = {**sd, first: torch.zeros(*sd[first].shape, 2)}
    msg = refused(make_bundle(tmp_path / "c", weights=resized, fmt="pt"), "models/model.pt")
    assert f"key '{first}' has shape" in msg


def test_unreadable_weight_files(tmp_path):
    folder = make_bundle(tmp_path / "a")
    (folder / "models" / "model.safetensors").write_bytes(b"not a safetensors file at all")
    refused(folder, "models/model.safetensors", "cannot read safetensors")
    folder = make_bundle(tmp_path / "b", fmt="none")
    torch.save(torch.zeros(3), folder / "models" / "model.pt")
    refused(folder, "models/model.pt", "expected a state dict")
    torch.save({"state_dict": state_dict()}, folder / "models" / "model.pt")
    refused(folder, "models/model.pt", "entry 'state_dict' holds a 'dict'")


def test_probe_rejects_nan(tmp_path):
    sd = state_dict()
    last_bias = [k for k in sd if k.endswith("bias")][-1]
    sd[last_bias] = torch.full_like(sd[last_bias], float("nan"))
    refused(make_bundle(tmp_path / "d", weights=sd), "probe", "NaN")


def test_probe_rejects_the_wrong_output_shape(tmp_path):
    two = with_key(CLASSIFIER, "args.classes", 2)
    refused(make_bundle(tmp_path / "d", network=two), "configs/metadata.json", "probe", "[2, 2]")


def test_probe_rejects_an_input_shape_the_network_cannot_read(tmp_path):
    bigger = with_key(METADATA, "input.shape", [1, 2 * SIDE, 2 * SIDE, 2 * SIDE])
    refused(make_bundle(tmp_path / "d", metadata=bigger), "configs/network.json", "probe")


def test_probe_rejects_logits_declared_as_probabilities(tmp_path):
    sd = state_dict()
    last_bias = [k for k in sd if k.endswith("bias")][-1]
    sd[last_bias] = torch.full_like(sd[last_bias], 50.0)
    meta = with_key(METADATA, "output.activation", "none")
    refused(make_bundle(tmp_path / "d", weights=sd, metadata=meta), "not probabilities")
