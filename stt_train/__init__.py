"""Offline training package (no ROS): datasets, training, evaluation, export."""
__version__ = "0.1.0"
