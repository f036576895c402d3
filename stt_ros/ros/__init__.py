"""The only layer that imports rclpy and ROS messages."""
