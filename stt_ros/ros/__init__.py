"""The only layer that imports rclpy and ROS messages.

Importing it (the node's processes do, before torch is loaded) makes idle OpenMP threads sleep
rather than spin: :func:`stt_ros.share_the_cpu` says why.
"""

from stt_ros import share_the_cpu

share_the_cpu()
