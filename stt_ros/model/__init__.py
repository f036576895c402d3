"""Pure PyTorch networks: no ROS, no file or network I/O."""
