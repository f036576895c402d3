"""Start stt_node in a subprocess and talk to it over real DDS (loopback, a domain of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]


#: what the node tests' params files run unless they say otherwise: the offline reference they compare
#: the node's masks with (STTConfig's library defaults, torch in fp32, exact and with no conversion on
#: first use). The node's own default, backend and precision auto, is tested in test/ros/test_default_backend.py.
REFERENCE_BACKEND = {"backend": "torch", "precision": "fp32"}


def write_params(path: Path, **params) -> Path:  # noqa: ANN003
    """A params file for any node name with ``params``, on REFERENCE_BACKEND unless they set backend/precision."""
    params = {**REFERENCE_BACKEND, **params}
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


class NodeProcess:
    """stt_node as a subprocess on ``domain``; stdout/stderr collected for assertions."""

    def __init__(self, params_file: Path, domain: int, extra: list[str] | None = None) -> None:
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain),
                   PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "stt_ros.ros.node", "--ros-args", "--params-file", str(ROOT / "config/stt.yaml"),
               "--params-file", str(params_file), *(extra or [])]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return any(text in line for line in self.lines)
            time.sleep(0.05)
        return False

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def expect_fatal(proc: NodeProcess, expected: str, timeout: float = 120) -> None:
    """The node must stop by itself with exit code 1 and one `cannot start:` line holding ``expected``."""
    try:
        proc.proc.wait(timeout=timeout)
    finally:
        code = proc.stop()
    assert code == 1, proc.output
    fatal = [line for line in proc.lines if "cannot start" in line]
    assert len(fatal) == 1 and expected in fatal[0], proc.output
    assert "Traceback" not in proc.output


class Client:
    """A test node in its own rclpy context on ``domain``, spun in a background thread."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("stt_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = defaultdict(list)
        self.arrivals: dict[str, list[float]] = defaultdict(list)  # time.time() at each callback
        self._lock = threading.Lock()
        self._pubs: dict[str, object] = {}
        self._subs: dict[str, object] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 (shutdown races)
                if not self.context.ok():
                    return
                raise

    def qos(self, reliable: bool = True, depth: int = 50):  # noqa: ANN201
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable else
                          ReliabilityPolicy.BEST_EFFORT)

    def subscribe(self, msg_type, topic: str, reliable: bool = True) -> None:  # noqa: ANN001
        def cb(msg) -> None:  # noqa: ANN001
            now = time.time()
            with self._lock:
                self.received[topic].append(msg)
                self.arrivals[topic].append(now)

        self._subs[topic] = self.node.create_subscription(msg_type, topic, cb, self.qos(reliable))

    def publisher(self, msg_type, topic: str, reliable: bool = True):  # noqa: ANN001, ANN201
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(msg_type, topic, self.qos(reliable))
        return self._pubs[topic]

    def messages(self, topic: str) -> list:
        with self._lock:
            return list(self.received[topic])

    def wait(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def wait_matched(self, topic: str, timeout: float = 30.0) -> bool:
        pub = self._pubs[topic]
        return self.wait(lambda: pub.get_subscription_count() > 0, timeout)

    def wait_publisher(self, topic: str, timeout: float = 30.0) -> bool:
        """Until the subscription to ``topic`` has matched a publisher (so its first message is not missed)."""
        sub = self._subs[topic]
        return self.wait(lambda: sub.get_publisher_count() > 0, timeout)

    def call(self, srv_type, name: str, request, timeout: float = 30.0):  # noqa: ANN001, ANN201
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        future = client.call_async(request)
        if not self.wait(future.done, timeout):
            raise TimeoutError(f"service {name} did not answer")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)


def image_msg(rgb: np.ndarray, stamp: float, frame_id: str, encoding: str = "rgb8", pad: int = 0):  # noqa: ANN201
    """sensor_msgs/Image from an RGB array, converted to ``encoding``, rows padded by ``pad`` bytes."""
    import cv2
    from sensor_msgs.msg import Image

    conv = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA, "bgra8": cv2.COLOR_RGB2BGRA,
            "mono8": cv2.COLOR_RGB2GRAY}[encoding]
    arr = rgb if conv is None else cv2.cvtColor(rgb, conv)
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1)
    if pad:
        row = np.concatenate([row, np.zeros((h, pad), np.uint8)], 1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=row.shape[1])
    msg.data = row.tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec = int(stamp)
    msg.header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
    return msg


def textured_frames(n: int, h: int, w: int, seed: int, step: int = 3) -> list[np.ndarray]:
    """A smooth random scene drifting sideways: consecutive frames differ but correlate."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w + step * n, 3), dtype=np.uint8), (7, 7), 2)
    return [np.ascontiguousarray(base[:, step * i:step * i + w]) for i in range(n)]


def random_weights(path: Path, config, seed: int) -> Path:  # noqa: ANN001 (an STTConfig)
    """A checkpoint of ``config``'s model with seeded random weights, for a node to load."""
    import torch

    from stt_ros.model.zoo import build_model
    from stt_ros.weights import save_weights

    torch.manual_seed(seed)
    save_weights(build_model(config), path, config=config.to_dict())
    return path
