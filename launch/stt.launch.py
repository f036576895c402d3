"""Start stt_node with config/stt.yaml: `ros2 launch stt_ros stt.launch.py [params_file:=...]`.

DDS discovery is confined to this host by default (discovery_range:=SUBNET to reach cameras on
other machines of the robot).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("stt_ros"), "config", "stt.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameters file for stt_node"),
        DeclareLaunchArgument("discovery_range", default_value="LOCALHOST",
                              description="ROS_AUTOMATIC_DISCOVERY_RANGE: LOCALHOST, SUBNET, OFF or SYSTEM_DEFAULT"),
        DeclareLaunchArgument("log_level", default_value="info"),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", LaunchConfiguration("discovery_range")),
        Node(
            package="stt_ros",
            executable="stt_node",
            name="stt_node",
            output="screen",
            parameters=[LaunchConfiguration("params_file")],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        ),
    ])
