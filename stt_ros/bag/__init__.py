"""rosbag2 replay evaluation (``stt-bag-eval``): TC over time, latency and mIoU of recorded drives.

Uses the pure-Python ``rosbags`` library; nothing here imports ROS. The online mode's player and
recorder live in :mod:`stt_ros.ros.replay` and run as a subprocess.
"""

from stt_ros import share_the_cpu

share_the_cpu()  # before torch loads (offline evaluation runs the model in this process)
