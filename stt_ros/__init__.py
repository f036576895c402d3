"""stt_ros: temporal semantic segmentation (Sparse Temporal Transformer) for ROS 2.

Layers: ``stt_ros.model`` (pure PyTorch), ``stt_ros.runtime`` (streaming inference, no ROS),
``stt_ros.metrics``, ``stt_ros.viz``, ``stt_ros.ros`` (the only ROS-importing layer),
``stt_ros.bag`` (rosbag2 replay evaluation).
"""

__version__ = "0.1.0"

# The generated message module (stt_ros.msg) is installed by CMake into site-packages/stt_ros;
# when this source tree is imported directly (tests run from the checkout) extend the package
# path so both halves of the package are found.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)


def share_the_cpu() -> None:
    """Make OpenMP threads that wait for work sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``,
    unless the environment sets a policy), before torch loads OpenMP. The layers whose processes
    share a robot's CPU call it on import (``stt_ros.ros``, ``stt_ros.bag``). Measured on the 2-core
    development machine while two other processes kept both cores busy, STT-BiSe18 at 64x128 with
    torch's default 2 threads took a median 1248 ms per frame with the default policy, 54 ms with
    ACTIVE and 29 ms with PASSIVE (24 ms with 1 thread) (docs/ROBUSTNESS.md). OMP_NUM_THREADS still
    sets the thread count."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
