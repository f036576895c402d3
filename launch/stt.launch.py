"""Start stt_node: `ros2 launch stt_ros stt.launch.py [argument:=value ...]`.

Arguments (all optional; an empty value means "as in the params file"):
  params_file      ROS 2 parameters file (default: the installed config/stt.yaml); its key must match
                   the node, e.g. `/**:` (a key `stt_node:` matches only /stt_node, not a namespaced node)
  namespace        namespace of the node and its outputs (/<namespace>/<camera>/mask, ...)
  camera_names     camera names: one name (front) or a YAML list ([front, rear])
  camera_topics    image topics in the same order: one topic or a YAML list ([/front/image_raw, /rear/image_raw])
  model_config     model YAML written beside a checkpoint (e.g. models/stt_bise18_synthdrive.yaml): the
                   model runs with the settings it was trained with, its weights included
  weights          .safetensors checkpoint of the model
  backend          inference backend (one of stt_ros.config.BACKENDS); the installed params file says
                   auto: TensorRT on an NVIDIA GPU, else OpenVINO on the CPU, else torch (the node logs
                   what it picked and why)
  precision        fp32, fp16, bf16, int8 or auto (the installed params file: auto, bf16 where the
                   CPU has it)
  use_sim_time     true: the node's clock follows /clock (bag playback with --clock)
  log_level        debug, info, warn, error or fatal (default info)
  respawn          true: start the node again whenever it exits (default false)
  respawn_delay    seconds to wait before such a restart (default 2.0)
  discovery_range  sets ROS_AUTOMATIC_DISCOVERY_RANGE for the node: LOCALHOST, SUBNET, OFF or
                   SYSTEM_DEFAULT; empty (the default) keeps the environment's value (the node takes
                   LOCALHOST, this host only, when it is unset; SUBNET reaches cameras on other machines)

A missing params file, an unknown argument, a value not among an argument's choices or a list that
does not parse stops the launch with a message naming the argument.
"""

import difflib
import os
import sys

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from stt_ros.config import BACKENDS, PRECISIONS

OVERRIDES = {  # launch argument -> (node parameter, kind of value)
    "camera_names": ("camera_names", "list"),
    "camera_topics": ("camera_topics", "list"),
    "model_config": ("model_config", "str"),
    "weights": ("weights", "str"),
    "backend": ("backend", "str"),
    "precision": ("precision", "str"),
    "use_sim_time": ("use_sim_time", "bool"),
}
CHOICES = {  # "" = not given
    "backend": ["", *BACKENDS],
    "precision": ["", *PRECISIONS],
    "use_sim_time": ["", "true", "false"],
    "log_level": ["debug", "info", "warn", "error", "fatal"],
    "discovery_range": ["", "LOCALHOST", "SUBNET", "OFF", "SYSTEM_DEFAULT"],
    "respawn": ["true", "false"],
}
# arguments that launch itself reads: what `ros2 launch --launch-prefix ...` adds, and the seconds
# ExecuteProcess waits after SIGINT before SIGTERM and SIGKILL
ROS2_LAUNCH_OWN = {"launch-prefix", "launch-prefix-filter", "sigterm_timeout", "sigkill_timeout"}


class LaunchArgumentError(RuntimeError):
    """A launch argument is wrong; `ros2 launch` prints the message (no traceback) and exits 1."""


def _list(arg: str, text: str) -> list[str]:
    """A bare string is a one-element list; anything starting with '[' must be a YAML list of names."""
    if not text.lstrip().startswith("["):
        return [text.strip()]
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LaunchArgumentError(f"{arg}:={text!r} is not a YAML list ({problem}); write e.g. "
                                  f"{arg}:='[front, rear]' or one name without brackets") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise LaunchArgumentError(f"{arg}:={text!r} must be a non-empty list of names, e.g. {arg}:='[front, rear]'")
    return value


def _launched_directly() -> bool:
    """Whether `ros2 launch` was given this file (not a launch file that includes it): only then are
    the command line's name:=value arguments all meant for this file."""
    me = os.path.basename(__file__)
    return any(os.path.basename(a) == me for a in sys.argv[1:])


def _check_unknown(context, declared: list[str]) -> None:  # noqa: ANN001
    if not _launched_directly():
        return
    for item in context.argv:
        name = item.split(":=", 1)[0]
        if ":=" not in item or name in declared or name in ROS2_LAUNCH_OWN:
            continue
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise LaunchArgumentError(f"unknown launch argument {name!r}{hint}; stt.launch.py takes: "
                                  f"{', '.join(declared)} (ros2 launch -s stt_ros stt.launch.py describes them)")


def _node(context, declared: list[str]):  # noqa: ANN001, ANN202
    _check_unknown(context, declared)
    value = {name: LaunchConfiguration(name).perform(context) for name in declared}
    params_file = value["params_file"]
    if not os.path.isfile(params_file):
        raise LaunchArgumentError(f"params_file:={params_file}: no such file (give an existing ROS 2 parameters "
                                  f"file, or leave params_file out for the installed config/stt.yaml)")
    try:
        respawn_delay = float(value["respawn_delay"])
    except ValueError:
        respawn_delay = -1.0
    if not respawn_delay >= 0:
        raise LaunchArgumentError(f"respawn_delay:={value['respawn_delay']!r} must be a number of seconds >= 0")
    overrides = {}
    for arg, (param, kind) in OVERRIDES.items():
        text = value[arg]
        if not text:
            continue
        overrides[param] = _list(arg, text) if kind == "list" else (text == "true") if kind == "bool" else text
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": value["discovery_range"]} if value["discovery_range"] else None
    return [Node(
        package="stt_ros",
        executable="stt_node",
        name="stt_node",
        namespace=value["namespace"],
        output="screen",
        parameters=[params_file, overrides],
        arguments=["--ros-args", "--log-level", value["log_level"]],
        additional_env=env,
        respawn=value["respawn"] == "true",
        respawn_delay=respawn_delay,
    )]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("stt_ros"), "config", "stt.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameters file; its key must match the node, e.g. /**:"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("camera_names", default_value="",
                              description="camera names: one name, or a YAML list such as [front, rear]"),
        DeclareLaunchArgument("camera_topics", default_value="",
                              description="image topics, same order: one topic, or a YAML list"),
        DeclareLaunchArgument("model_config", default_value="",
                              description="model YAML written beside a checkpoint (its settings and weights)"),
        DeclareLaunchArgument("weights", default_value="", description=".safetensors checkpoint of the model"),
        DeclareLaunchArgument("backend", default_value="", choices=CHOICES["backend"],
                              description="inference backend (empty: as in the params file; the installed "
                                          "one says auto)"),
        DeclareLaunchArgument("precision", default_value="", choices=CHOICES["precision"],
                              description="numeric precision (empty: as in the params file; the installed one "
                                          "says auto)"),
        DeclareLaunchArgument("use_sim_time", default_value="", choices=CHOICES["use_sim_time"],
                              description="follow /clock (empty: as in the params file)"),
        DeclareLaunchArgument("log_level", default_value="info", choices=CHOICES["log_level"],
                              description="the node's log level"),
        DeclareLaunchArgument("respawn", default_value="false", choices=CHOICES["respawn"],
                              description="start the node again whenever it exits"),
        DeclareLaunchArgument("respawn_delay", default_value="2.0",
                              description="seconds before a respawn"),
        DeclareLaunchArgument("discovery_range", default_value="", choices=CHOICES["discovery_range"],
                              description="ROS_AUTOMATIC_DISCOVERY_RANGE for the node (empty: the environment's; "
                                          "the node uses LOCALHOST when it is unset)"),
    ]
    declared = [a.name for a in args]
    return LaunchDescription([*args, OpaqueFunction(function=_node, args=[declared])])
