"""Fuzzing the configuration entry points: STTConfig (mapping and YAML file), the node's
NodeSettings and its parameter updates, and stt_train's experiment YAML with --set overrides.

Every input gives a valid object or a ConfigError whose message is short and says what was wrong;
never another exception, a hang or a message the size of an expanded YAML alias bomb."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from stt_ros.config import MAX_CONFIG_BYTES, ConfigError, STTConfig, load_config
from stt_ros.ros.settings import NodeSettings
from stt_testing.fuzz_util import SCALARS, VALUES, examples
from stt_train.config import DataConfig, ExperimentConfig, TrainConfig, apply_overrides, from_dict, load_experiment

STT_FIELDS = [f.name for f in dataclasses.fields(STTConfig)]
NODE_FIELDS = [f.name for f in dataclasses.fields(NodeSettings)]
MAX_MESSAGE = 4000  # an error message is read by a person


def field_values(names: list[str]) -> st.SearchStrategy[dict]:
    """Mappings of (mostly) real field names to arbitrary values, plus the odd unknown key."""
    keys = st.one_of(st.sampled_from(names), st.sampled_from(names), st.text(max_size=6), st.integers(-3, 3))
    return st.dictionaries(keys, VALUES, max_size=5)


def plausible(cls: type) -> st.SearchStrategy[dict]:
    """Mappings of ``cls``'s fields to values near the valid ones (numbers around the ranges, the
    allowed choices, lists of the right length) or anything at all, so that both acceptance and
    every kind of refusal are reached."""
    defaults = cls()
    per_field = {}
    for f in dataclasses.fields(cls):
        meta, default = f.metadata, getattr(defaults, f.name)
        options = [st.just(default), VALUES]
        if "choices" in meta:
            options.append(st.sampled_from(list(meta["choices"]) + ["", "x"]))
        if "lo" in meta and isinstance(default, float):
            options.append(st.floats(meta["lo"] - 1, meta["hi"] + 1))
        elif "lo" in meta:
            options.append(st.integers(meta["lo"] - 1, min(meta["hi"], meta["lo"] + 64) + 1))
        if isinstance(default, (list, tuple)):
            options.append(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=4))
        per_field[f.name] = st.one_of(options)
    return st.fixed_dictionaries({}, optional=per_field)


def check_error(exc: ConfigError) -> str:
    msg = str(exc)
    assert msg and len(msg) < MAX_MESSAGE, msg[:500]
    return msg


# ---------------------------------------------------------------------------- STTConfig
@settings(max_examples=examples(300))
@given(st.one_of(field_values(STT_FIELDS), plausible(STTConfig)))
def test_stt_config_from_any_mapping(data: dict) -> None:
    try:
        cfg = STTConfig.from_dict(data)
    except ConfigError as exc:
        msg = check_error(exc)
        event("rejected")
        # it names a key of the input or the problem with the whole mapping
        assert any(str(k)[:40] in msg or repr(k)[:40] in msg for k in data) or "mapping" in msg, msg
        return
    event("accepted")
    cfg.validate()
    assert STTConfig.from_dict(cfg.to_dict()) == cfg  # what it accepted round-trips


@settings(max_examples=examples(150))
@given(st.dictionaries(st.sampled_from(STT_FIELDS), SCALARS, max_size=3))
def test_stt_config_keyword_construction(kwargs: dict) -> None:
    """The constructor validates as thoroughly as from_dict (typed values straight from code)."""
    try:
        STTConfig(**kwargs)
    except ConfigError as exc:
        check_error(exc)


@settings(max_examples=examples(150))
@given(st.one_of(st.text(max_size=200), VALUES.map(lambda v: yaml.safe_dump(v)),
                 field_values(STT_FIELDS).map(lambda d: yaml.safe_dump(d))))
def test_load_config_from_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(str(path))
    except ConfigError as exc:
        check_error(exc)
        return
    cfg.validate()


def alias_bomb(levels: int, key: str = "model") -> str:
    """A YAML mapping whose ``key`` expands to 10**levels strings through nested aliases."""
    items = ["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
                                                        for i in range(1, levels)]
    return f"{key}: [" + ", ".join(items) + "]\n"


def test_hostile_config_files(tmp_path: Path) -> None:
    cases = {
        "bomb.yaml": (alias_bomb(9), "model="),  # 10**9 leaves if printed in full
        "deep.yaml": ("model: " + "[" * 20000 + "]" * 20000, "nests collections too deeply"),
        "big.yaml": ("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), "larger than 1 MB"),
        "binary.yaml": (None, "not UTF-8"),
        "tabs.yaml": ("model:\t[\n", "not valid YAML"),
        "list.yaml": ("- model\n", "mapping"),
        "keys.yaml": ("1: 2\nnull: 3\n[1, 2]: 4\n", "not valid YAML|unknown config key"),
        "types.yaml": ("mean: 5\n", "mean=5 must be a list"),
        "weights.yaml": ("weights: 12\n", "weights=12 must be a string"),
        "std.yaml": ("std: [.nan, 1, 1]\n", "three finite numbers"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes(b"model: \xff\xfe\x00\x81\n")
        else:
            path.write_text(text)
        with pytest.raises(ConfigError, match=message) as exc:
            load_config(str(path))
        check_error(exc.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path))  # a directory
    if os.path.exists("/dev/zero"):  # endless input: read no more than the size limit
        with pytest.raises(ConfigError, match="larger than"):
            load_config("/dev/zero")


# ---------------------------------------------------------------------------- NodeSettings
@settings(max_examples=examples(300))
@given(plausible(NodeSettings))
def test_node_settings_from_any_values(kwargs: dict) -> None:
    try:
        s = NodeSettings(**kwargs)
    except ConfigError as exc:
        msg = check_error(exc)
        event("rejected")
        assert any(k in msg for k in kwargs) or "camera" in msg or "palette" in msg, msg
        return
    event("accepted")
    s.validate()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"camera_names": ["é"]}, "not a valid ROS name token"),
    ({"camera_names": ["a", "a"], "camera_topics": ["/x", "/y"]}, "duplicates"),
    ({"camera_names": [3]}, "must be list"),
    ({"overlay_alpha": float("nan")}, "overlay_alpha=nan must be float"),
    ({"input_depth": 2.5}, "input_depth=2.5 must be int"),
    ({"tc_enabled": "yes"}, "tc_enabled='yes' must be bool"),
    ({"palette": "custom", "palette_colors": [1, 2]}, "R,G,B triples"),
    ({"camera_transports": ["raw", "raw"]}, "1 entry"),
])
def test_node_settings_refusals_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeSettings(**kwargs)


# what a ROS parameter can carry (rclpy's Parameter types), for settings_with
ROS_VALUES = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=12),
                       st.lists(st.integers(-(2**63), 2**63 - 1), max_size=7), st.lists(st.floats(), max_size=4),
                       st.lists(st.text(max_size=6), max_size=3), st.lists(st.booleans(), max_size=3))


@pytest.mark.ros
@settings(max_examples=examples(300))
@given(st.lists(st.tuples(st.one_of(st.sampled_from(NODE_FIELDS), st.sampled_from(["use_sim_time", "model"])),
                          ROS_VALUES), max_size=4))
def test_parameter_updates_validate_or_refuse(changes: list) -> None:
    """settings_with (the node's on-set-parameters path) on any list of typed parameter values."""
    from rclpy.parameter import Parameter

    from stt_ros.ros.params import settings_with

    base = NodeSettings()
    params = [Parameter(name, value=value) for name, value in changes]
    try:
        new = settings_with(base, params)
        new.validate()
    except ConfigError as exc:
        check_error(exc)
        event("refused")
        return
    event("accepted")
    own = {n: v for n, v in changes if n in NODE_FIELDS}
    for name, value in own.items():  # the last value given for each field is the one applied
        got = getattr(new, name)
        assert got == (list(value) if isinstance(value, (list, tuple)) else value), (name, got, value)


@pytest.mark.ros
def test_use_sim_time_and_other_rclpy_parameters_leave_settings_alone() -> None:
    """Regression: rclpy's own parameters reach the node's callback too; they used to make
    dataclasses.replace raise TypeError, so ``use_sim_time`` could never be set on stt_node."""
    from rclpy.parameter import Parameter

    from stt_ros.ros.params import settings_with

    base = NodeSettings()
    assert settings_with(base, [Parameter("use_sim_time", value=True)]) == base
    new = settings_with(base, [Parameter("use_sim_time", value=True), Parameter("overlay_alpha", value=0.3)])
    assert new.overlay_alpha == 0.3


# ---------------------------------------------------------------------------- experiment configs (stt_train)
SECTIONS = {"model": STT_FIELDS, "data": [f.name for f in dataclasses.fields(DataConfig)],
            "train": [f.name for f in dataclasses.fields(TrainConfig)]}


@st.composite
def experiments(draw: st.DrawFn) -> dict:
    out: dict = {}
    for section, names in SECTIONS.items():
        if draw(st.booleans()):
            out[section] = draw(st.one_of(field_values(names), VALUES))
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(max_size=5))] = draw(VALUES)
    return out


OVERRIDES = st.lists(st.one_of(
    st.builds(lambda s, k, v: f"{s}.{k}={v}", st.sampled_from(list(SECTIONS)), st.sampled_from(
        sum(SECTIONS.values(), [])), st.one_of(st.text(max_size=10), st.sampled_from(["[", "{a: b}", "1e-3", "-1",
                                                                                      "[1, 2]", "null", "&a x"]))),
    st.text(max_size=15)), max_size=3)


@settings(max_examples=examples(300))
@given(experiments(), OVERRIDES)
def test_experiment_config_from_any_sections_and_overrides(data: dict, overrides: list[str]) -> None:
    try:
        cfg = from_dict(apply_overrides(data, overrides))
    except ConfigError as exc:
        check_error(exc)
        event("rejected")
        return
    event("accepted")
    assert isinstance(cfg, ExperimentConfig)
    assert from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


@settings(max_examples=examples(100))
@given(st.one_of(st.text(max_size=200), experiments().map(yaml.safe_dump)), OVERRIDES)
def test_load_experiment_from_any_text(tmp_path_factory: pytest.TempPathFactory, text: str,
                                       overrides: list[str]) -> None:
    path = tmp_path_factory.mktemp("exp") / "e.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_experiment(path, overrides)
    except ConfigError as exc:
        check_error(exc)


@pytest.mark.parametrize(("text", "overrides", "message"), [
    ("model: [1, 2]\n", [], "section 'model' must be a mapping"),
    ("train: 5\n", [], "section 'train' must be a mapping"),
    ("data: {crop: ab}\n", [], "data.crop='ab' must be list"),
    ("train: {iters: x}\n", [], "train.iters='x' must be int"),
    ("train: {lr: .nan}\n", [], "train.lr=nan must be float"),
    ("", ["train.lr=[1, {"], "not valid YAML"),
    ("", ["train.lr=1e-3"], "YAML reads 1e-3 as a string, write 0.001"),
    (alias_bomb(9, "train: {optimizer"), [], "train.optimizer="),
    ("", ["train.iters=" + "[" * 20000], "not valid YAML"),
])
def test_experiment_refusals_name_the_problem(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(text if not text.startswith("train: {optimizer") else text.rstrip("\n") + "}\n")
    with pytest.raises(ConfigError, match=message) as exc:
        load_experiment(path, overrides)
    check_error(exc.value)
