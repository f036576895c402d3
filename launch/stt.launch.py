"""Start stt_node: `ros2 launch stt_ros stt.launch.py [argument:=value ...]`.

Arguments (all optional; empty means "as in the params file"):
  params_file      ROS 2 parameters file (default: the installed config/stt.yaml)
  camera_names     YAML list of camera names, e.g. "[front, rear]"
  camera_topics    YAML list of image topics, same order, e.g. "[/front/image_raw, /rear/image_raw]"
  namespace        namespace of the node and its outputs
  model_config     model YAML written beside a checkpoint (e.g. models/stt_bise18_synthdrive.yaml): the
                   model runs with the settings it was trained with, its weights included
  weights          .safetensors checkpoint of the model
  backend          torch, onnxruntime or tensorrt
  discovery_range  ROS_AUTOMATIC_DISCOVERY_RANGE (LOCALHOST by default; SUBNET to reach cameras on
                   other machines of the robot)
  log_level        debug, info, warn, error
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

OVERRIDES = {  # launch argument -> (parameter, parse as YAML)
    "camera_names": ("camera_names", True),
    "camera_topics": ("camera_topics", True),
    "model_config": ("model_config", False),
    "weights": ("weights", False),
    "backend": ("backend", False),
}


def _node(context):
    overrides = {}
    for arg, (param, as_yaml) in OVERRIDES.items():
        text = LaunchConfiguration(arg).perform(context)
        if text:
            overrides[param] = yaml.safe_load(text) if as_yaml else text
    return [Node(
        package="stt_ros",
        executable="stt_node",
        name="stt_node",
        namespace=LaunchConfiguration("namespace").perform(context),
        output="screen",
        parameters=[LaunchConfiguration("params_file").perform(context), overrides],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
    )]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("stt_ros"), "config", "stt.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="parameters file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("discovery_range", default_value="LOCALHOST",
                              description="ROS_AUTOMATIC_DISCOVERY_RANGE: LOCALHOST, SUBNET, OFF, SYSTEM_DEFAULT"),
        DeclareLaunchArgument("log_level", default_value="info"),
    ] + [DeclareLaunchArgument(name, default_value="", description=f"override of parameter {param}")
         for name, (param, _) in OVERRIDES.items()]
    return LaunchDescription([
        *args,
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", LaunchConfiguration("discovery_range")),
        OpaqueFunction(function=_node),
    ])
