"""rosbag2 replay evaluation (``stt-bag-eval``): TC over time, latency and mIoU of recorded drives.

Uses the pure-Python ``rosbags`` library; nothing here imports ROS. The online mode's player and
recorder live in :mod:`stt_ros.ros.replay` and run as a subprocess.
"""
