"""The only layer that imports rclpy and ROS messages.

Importing it (the node's processes do, before torch is loaded) makes OpenMP threads that wait
for work sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``, unless the environment sets a
policy). Measured on the 2-core development machine while two other processes kept both cores
busy, STT-BiSe18 at 64x128 with torch's default 2 threads took a median 1248 ms per frame with
the default policy, 54 ms with ACTIVE and 29 ms with PASSIVE (24 ms with 1 thread): a car's
computer is shared, and the default turned any other CPU load into a 50x slower node
(docs/ROBUSTNESS.md). OMP_NUM_THREADS still sets the thread count.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
