"""stt_node in a real ROS 2 system, over DDS (loopback, a domain per test).

* Params files under a namespace: a `/**:` file applies to /robot/stt_node; an old-style
  `stt_node:` file, which rcl ignores there, gets a warning that names the problem.
* `ros2 launch stt_ros stt.launch.py` for real: the installed launch file starts the installed
  stt_node in a namespace, frames go in, masks come out on the namespaced topic, parameters are
  those of the arguments; wrong arguments stop the launch with a message and a non-zero exit, never
  a traceback. These need launch, launch_ros and the ros2 CLI in the environment: `make setup`
  installs them from ../shared/ros2-launch where that exists (they are not on PyPI); elsewhere
  they skip.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from stt_ros.config import load_config, resolve_weights
from stt_ros.ros.settings import NodeSettings
from stt_ros.runtime.factory import resolve_auto
from stt_testing.node_harness import ROOT, Client, NodeProcess, image_msg, textured_frames

pytestmark = pytest.mark.ros

BIN = Path(sys.executable).parent
MODEL_CONFIG = ROOT / "models" / "stt_bise18_synthdrive.yaml"  # the demo model, 128x256 input: seconds
SMALL = ["-p", "model:=stt_bise18", "-p", "input_height:=64", "-p", "input_width:=128", "-p", "key_frames:=2"]


@pytest.fixture
def launch_env(tmp_path: Path) -> dict[str, str]:
    if not (BIN / "ros2").exists() or importlib.util.find_spec("launch_ros") is None:
        pytest.skip("no `ros2 launch` here (launch/launch_ros are not on PyPI; make setup installs them from "
                    "../shared/ros2-launch, which is absent)")
    if not (Path(sys.prefix) / "share" / "stt_ros" / "launch" / "stt.launch.py").exists():
        pytest.skip("stt_ros is not installed into this environment (make setup)")
    # os.environ already holds this test's ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
    # The venv's bin/ is deliberately NOT on PATH (ros2 is called by its path): the installed
    # lib/stt_ros/stt_node must run with the interpreter it was built for, not whatever python3 is first.
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN)
    env = dict(os.environ, AMENT_PREFIX_PATH=sys.prefix, PATH=path, ROS_LOG_DIR=str(tmp_path / "ros_log"),
               PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    return env


def ros2_launch(*args: str) -> list[str]:
    return [str(BIN / "ros2"), "launch", "stt_ros", "stt.launch.py", *args]


class Launch:
    """`ros2 launch` in a process group of its own (so a test can Ctrl-C it as a terminal would)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        # SIGINT back to its default in the child: a shell without job control starts background
        # commands (a CI runner's, say) with SIGINT ignored, and launch and the node would inherit that
        self.proc = subprocess.Popen(ros2_launch(*args), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(x.rstrip() for x in self.proc.stdout),
                                        daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        time.sleep(0.2)
        return any(text in line for line in self.lines)

    def ctrl_c(self, times: int) -> int:
        """SIGINT to the whole group ``times`` times, 0.2 s apart (the node gets each too); exit code."""
        for _ in range(times):
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGINT)
                time.sleep(0.2)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=5)


def get_parameters(client: Client, node: str, names: list[str]) -> dict:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    answer = client.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names))
    return {n: parameter_value_to_python(v) for n, v in zip(names, answer.values, strict=True)}


def test_key_matching_follows_rcl() -> None:
    from stt_ros.ros.params import _key_matches, _params_files

    for key, name, expected in [("/**", "/robot/stt_node", True), ("stt_node", "/stt_node", True),
                                ("stt_node", "/robot/stt_node", False), ("/stt_node", "/robot/stt_node", False),
                                ("/**/stt_node", "/robot/stt_node", True), ("/**/stt_node", "/stt_node", True),
                                ("/*/stt_node", "/stt_node", False), ("/*/stt_node", "/robot/stt_node", True),
                                ("robot/stt_node", "/robot/stt_node", True), ("/robot/*", "/robot/stt_node", True),
                                ("/robot/**", "/robot/a/stt_node", True), ("/other/**", "/robot/stt_node", False)]:
        assert _key_matches(key, name) is expected, (key, name)
    args = ["stt_node", "--ros-args", "--params-file", "a.yaml", "-p", "x:=1", "--", "--params-file", "not.yaml",
            "--ros-args", "--params-file", "b.yaml"]
    assert _params_files(args) == ["a.yaml", "b.yaml"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    params = {"ros__parameters": {"max_frame_gap_s": 7.5}}
    out = {"new": tmp_path / "new.yaml", "old": tmp_path / "old.yaml", "nested": tmp_path / "nested.yaml"}
    out["new"].write_text(yaml.safe_dump({"/**": params}))
    out["old"].write_text(yaml.safe_dump({"stt_node": params}))
    out["nested"].write_text(yaml.safe_dump({"robot": {"stt_node": params}}))  # rcl's nested namespace form
    return out


@pytest.mark.parametrize("kind", ["new", "nested", "old"])
def test_params_file_under_a_namespace(files: dict[str, Path], dds_isolation: int, kind: str) -> None:
    proc = NodeProcess(files[kind], dds_isolation, extra=[*SMALL, "-r", "__ns:=/robot"])
    client = None
    try:
        assert proc.wait_for_line("cameras:", 90), proc.output
        client = Client(dds_isolation)
        value = get_parameters(client, "/robot/stt_node", ["max_frame_gap_s"])["max_frame_gap_s"]
        warnings = [line for line in proc.lines if "has key" in line]
        if kind == "old":
            assert value == NodeSettings().max_frame_gap_s, "rcl applied an stt_node: key under a namespace after all?"
            assert len(warnings) == 1, proc.output
            assert (f"params file {files['old']} has key 'stt_node' which matches only /stt_node, but this node "
                    "is /robot/stt_node: its parameters are ignored; use '/**:'") in warnings[0]
        else:
            assert value == 7.5 and not warnings, proc.output
    finally:
        if client is not None:
            client.close()
        assert proc.stop() == 0, proc.output


@pytest.mark.slow
def test_launch_runs_the_node_in_a_namespace(launch_env: dict[str, str], dds_isolation: int, tmp_path: Path) -> None:
    from sensor_msgs.msg import Image

    params = tmp_path / "robot.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"max_frame_gap_s": 7.5}}}))
    launch = Launch(["namespace:=robot", "camera_names:=front", "camera_topics:=/robot/front/image_raw",
                     f"model_config:={MODEL_CONFIG}", f"params_file:={params}", "discovery_range:=LOCALHOST",
                     "log_level:=info", "respawn:=true"], launch_env)
    client = None
    try:
        assert launch.wait_for_line("cameras: front <- /robot/front/image_raw", 120), launch.output
        client = Client(dds_isolation)
        client.subscribe(Image, "/robot/front/mask")
        pub = client.publisher(Image, "/robot/front/image_raw")
        assert client.wait_matched("/robot/front/image_raw"), launch.output
        frames = textured_frames(4, 128, 256, seed=3)
        for i, rgb in enumerate(frames):
            pub.publish(image_msg(rgb, 100.0 + 0.1 * i, "front_camera"))
            client.wait(lambda i=i: len(client.messages("/robot/front/mask")) > i, timeout=20)
        masks = client.messages("/robot/front/mask")
        assert len(masks) >= 2, launch.output
        assert (masks[0].height, masks[0].width, masks[0].encoding) == (128, 256, "mono8")
        assert masks[0].header.frame_id == "front_camera" and masks[0].header.stamp.sec == 100
        values = get_parameters(client, "/robot/stt_node",
                                ["camera_names", "camera_topics", "model_config", "max_frame_gap_s", "backend",
                                 "precision"])
        # backend/precision: neither the arguments nor this params file set them, and the model YAML's
        # torch/fp32 are the library's, so the node's default runs (auto), and says what it picked
        assert values == {"camera_names": ["front"], "camera_topics": ["/robot/front/image_raw"],
                          "model_config": str(MODEL_CONFIG), "max_frame_gap_s": 7.5, "backend": "auto",
                          "precision": "auto"}
        cfg = resolve_weights(load_config(MODEL_CONFIG), MODEL_CONFIG).replace(backend="auto", precision="auto")
        picked, why = resolve_auto(cfg)
        started = next(line for line in launch.lines if "cameras: front <- /robot/front/image_raw" in line)
        assert f"stt_bise18 ({picked.backend}, " in started and f"(backend=auto: {why}; precision=auto" in started, \
            launch.output
    finally:
        if client is not None:
            client.close()
        # Ctrl-C twice, as an impatient user does: the node finishes its shutdown, and with respawn
        # on, launch does not start it again
        code = launch.ctrl_c(times=2)
    assert code == 0, launch.output
    assert "process has finished cleanly" in launch.output and "user interrupted" in launch.output, launch.output
    assert "Traceback" not in launch.output and "process has died" not in launch.output, launch.output
    assert launch.output.count("process started") == 1, launch.output


@pytest.mark.parametrize(("args", "expected"), [
    (["params_file:=/nonexistent/stt.yaml"], "params_file:=/nonexistent/stt.yaml: no such file"),
    (["camera_topic:=/front/image_raw"], "unknown launch argument 'camera_topic' (did you mean camera_topics?)"),
    (["log_level:=loud"], 'Argument "log_level" provided value "loud" is not valid'),
    (["camera_names:=[front, rear"], "camera_names:='[front, rear' is not a YAML list"),
    (["camera_topics:=[1, 2]"], "camera_topics:='[1, 2]' must be a non-empty list of names"),
    (["backend:=cuda"], 'Argument "backend" provided value "cuda" is not valid'),
    (["precision:=fp64"], 'Argument "precision" provided value "fp64" is not valid'),
    (["respawn_delay:=soon"], "respawn_delay:='soon' must be a number of seconds"),
])
def test_wrong_arguments_stop_the_launch_with_a_message(launch_env: dict[str, str], args: list[str],
                                                        expected: str) -> None:
    out = subprocess.run(ros2_launch(*args), env=launch_env, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert expected in text, text
    assert "Traceback" not in text and "process started" not in text, text
