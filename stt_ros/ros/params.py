"""ROS parameters of stt_node, declared from NodeSettings and STTConfig (one source of names,
defaults, ranges and help)."""

from __future__ import annotations

import dataclasses
import fnmatch
import sys
from typing import Any

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from stt_ros.config import STTConfig, load_config, resolve_weights
from stt_ros.ros.settings import NODE_MODEL_DEFAULTS, NodeSettings, node_model_defaults

_ARRAY_TYPES = {str: ParameterType.PARAMETER_STRING_ARRAY, int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY}
_SCALAR_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def _type_of(f: dataclasses.Field, default: Any) -> int:
    hint = str(f.type)
    if isinstance(default, (list, tuple)):
        inner = str if "str" in hint else float if "float" in hint else int
        return _ARRAY_TYPES[inner]
    return _SCALAR_TYPES[type(default)]


def _descriptor(f: dataclasses.Field, ptype: int, read_only: bool) -> ParameterDescriptor:
    meta = f.metadata
    d = ParameterDescriptor(name=f.name, type=ptype, description=meta["help"], read_only=read_only)
    if "choices" in meta:
        d.additional_constraints = "one of: " + ", ".join(meta["choices"])
    if "lo" in meta and ptype == ParameterType.PARAMETER_DOUBLE:
        d.floating_point_range = [FloatingPointRange(from_value=float(meta["lo"]), to_value=float(meta["hi"]))]
    elif "lo" in meta and ptype == ParameterType.PARAMETER_INTEGER:
        d.integer_range = [IntegerRange(from_value=int(meta["lo"]), to_value=int(meta["hi"]), step=1)]
    return d


def all_fields() -> list[tuple[type, dataclasses.Field, Any]]:
    """(owner class, field, default) of every parameter, node settings first; the model's defaults are
    STTConfig's except NODE_MODEL_DEFAULTS (backend and precision: auto)."""
    out = []
    for cls in (NodeSettings, STTConfig):
        defaults = node_model_defaults() if cls is STTConfig else NodeSettings()
        for f in dataclasses.fields(cls):
            out.append((cls, f, getattr(defaults, f.name)))
    return out


def declare_parameters(node: Node) -> None:
    """Declare every parameter with its descriptor; read-only unless the field is dynamic.

    The node's settings come first. If ``model_config`` names a model YAML, its values become the
    model parameters' defaults: a value from a params file or ``-p`` still wins unless it equals the
    built-in default (config/stt.yaml lists every parameter at its default, and must not undo the file).
    """
    model_defaults: dict[str, Any] | None = None
    for owner, f, default in all_fields():
        if owner is STTConfig and model_defaults is None:
            model_defaults = _model_config_values(node)
        ptype = _type_of(f, default)
        value = model_defaults.get(f.name, default) if owner is STTConfig else default
        value = list(value) if isinstance(value, tuple) else value
        read_only = not f.metadata.get("dynamic")
        empty = isinstance(value, list) and not value
        if empty:
            value = Parameter.Type(ptype)  # an empty array: declare by type (rclpy cannot infer it from [])
        override = getattr(node, "_parameter_overrides", {}).get(f.name)  # rclpy's -p / params-file values
        ignore = (owner is STTConfig and f.name in model_defaults and override is not None
                  and _plain(override.value) == _plain(default))
        node.declare_parameter(f.name, value, _descriptor(f, ptype, read_only=read_only), ignore_override=ignore)
        if empty and not read_only:
            try:
                node.get_parameter(f.name)
            except ParameterUninitializedException:  # give it its empty value: `ros2 param get` and the
                # get_parameters service answer nothing at all for a parameter that has none
                node.set_parameters([Parameter(f.name, Parameter.Type(ptype), [])])


def _model_config_values(node: Node) -> dict[str, Any]:
    """The model YAML of the ``model_config`` parameter as {field: value} (ConfigError if invalid),
    its relative weights path resolved as stt-bag-eval resolves it; {} when the parameter is empty.

    A YAML whose backend and precision are both the library's defaults (torch, fp32: what a YAML
    written by stt_train.release records, the training's, not a choice of where to deploy) leaves them
    out, so the node's own defaults (auto) stay; any other pair (tensorrt/fp16, torch/bf16) is the
    YAML's choice and kept."""
    path = _value(node, "model_config")
    if not path:
        return {}
    cfg = resolve_weights(load_config(path), path)
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(STTConfig)}
    library = STTConfig()
    if all(values[name] == getattr(library, name) for name in NODE_MODEL_DEFAULTS):
        for name in NODE_MODEL_DEFAULTS:
            del values[name]
    return values


def _plain(v: Any) -> Any:
    """A parameter value with its arrays (tuple, list or array.array, as rclpy hands them out) as lists."""
    return list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "array" else v


def _value(node: Node, name: str) -> Any:
    try:
        v = node.get_parameter(name).value
    except ParameterUninitializedException:  # an empty array declared by type
        return []
    return _plain(v)


def read_settings(node: Node) -> tuple[NodeSettings, STTConfig]:
    """Current parameter values as (NodeSettings, STTConfig); raises ConfigError when invalid."""
    node_kw = {f.name: _value(node, f.name) for f in dataclasses.fields(NodeSettings)}
    cfg_kw = {f.name: _value(node, f.name) for f in dataclasses.fields(STTConfig)}
    for name in ("palette_colors",):
        node_kw[name] = [int(v) for v in node_kw[name] or []]
    for name in ("mean", "std"):
        cfg_kw[name] = tuple(float(v) for v in cfg_kw[name])
    return NodeSettings(**node_kw), STTConfig(**cfg_kw)


def settings_with(settings: NodeSettings, params: list[Parameter]) -> NodeSettings:
    """``settings`` with the given parameter changes applied and validated (ConfigError if not).

    Parameters that are not NodeSettings fields (rclpy's own, such as ``use_sim_time``; the model's
    are read-only and never reach here) leave the settings as they are."""
    own = {f.name for f in dataclasses.fields(NodeSettings)}
    changes = {}
    for p in params:
        if p.name not in own:
            continue
        changes[p.name] = _plain(p.value)
    if isinstance(changes.get("palette_colors"), list):  # anything else is left to validation to refuse
        changes["palette_colors"] = [int(x) if isinstance(x, int) else x for x in changes["palette_colors"]]
    return dataclasses.replace(settings, **changes)


def params_file_warnings(node: Node, args: list[str] | None = None) -> list[str]:
    """Warn (on the node's logger) about each ``--params-file`` that sets nothing for this node, and
    return the warnings.

    rcl applies a params file's entry only where its key matches the node's fully qualified name
    (``/**`` matches every node, ``*`` one name token); anything else is dropped without a word, so a
    file written for ``stt_node:`` leaves a node started in a namespace on its built-in defaults.
    ``args`` are the process's command-line arguments (default ``sys.argv``, which ``rclpy.init``
    reads). A file that rcl could not read already stopped rclpy before this point."""
    fqn = node.get_fully_qualified_name()
    warnings = []
    for path in _params_files(sys.argv if args is None else args):
        keys = _node_keys(path)
        if keys is None or not keys or any(_key_matches(k, fqn) for k in keys):
            continue
        for key in keys:
            if "*" in key:
                why = f"which does not match this node {fqn}"
            else:
                why = f"which matches only {_absolute(key)}, but this node is {fqn}"
            warnings.append(f"params file {path} has key '{key}' {why}: its parameters are ignored; "
                            f"use '/**:' (any node) or '{fqn}:'")
    for text in warnings:
        node.get_logger().warning(text)
    return warnings


def _params_files(args: list[str]) -> list[str]:
    """The values of ``--params-file`` inside the ``--ros-args ... [--]`` sections of ``args``."""
    files, in_ros, i = [], False, 0
    while i < len(args):
        a = args[i]
        if a == "--ros-args":
            in_ros = True
        elif a == "--":
            in_ros = False
        elif in_ros and a == "--params-file" and i + 1 < len(args):
            files.append(args[i + 1])
            i += 1
        i += 1
    return files


def _node_keys(path: str) -> list[str] | None:
    """The node names of a params file's entries (nested namespace mappings joined with '/'), or
    None when the file cannot be read as YAML (rcl reports that itself)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    keys: list[str] = []

    def walk(mapping: dict, prefix: str) -> None:
        for k, v in mapping.items():
            if not isinstance(v, dict):
                continue
            name = f"{prefix}/{str(k).strip('/')}" if prefix else str(k)
            if "ros__parameters" in v:
                keys.append(name)
            else:
                walk(v, name)

    if isinstance(doc, dict):
        walk(doc, "")
    return keys


def _absolute(key: str) -> str:
    return key if key.startswith("/") else "/" + key


def _key_matches(key: str, fqn: str) -> bool:
    """rcl's rule: ``**`` stands for any number of name tokens (none included), ``*`` for one."""
    pattern = [t for t in _absolute(key).split("/") if t]
    name = [t for t in fqn.split("/") if t]

    def match(p: int, n: int) -> bool:
        if p == len(pattern):
            return n == len(name)
        if pattern[p] == "**":
            return any(match(p + 1, m) for m in range(n, len(name) + 1))
        return n < len(name) and fnmatch.fnmatchcase(name[n], pattern[p]) and match(p + 1, n + 1)

    return match(0, 0)
