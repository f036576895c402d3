"""Plain pip install of stt_ros and stt_train (training machines without ROS).

On a ROS 2 install, build with colcon instead: CMakeLists.txt also generates the
TemporalConsistency message. Metadata lives in setup.cfg.
"""

from setuptools import setup

setup()
