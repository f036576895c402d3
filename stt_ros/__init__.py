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
