"""rosbag2 replay evaluation (``stt-bag-eval``): TC over time, latency and mIoU of recorded drives.

Uses the pure-Python ``rosbags`` library; nothing here imports ROS. The online mode's player and
recorder live in :mod:`stt_ros.ros.replay` and run as a subprocess.
"""

import os

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other work the default spin
# made inference 30x slower (docs/ROBUSTNESS.md). Set before torch loads; a user's choice is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
