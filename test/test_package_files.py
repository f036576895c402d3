"""The package's files agree with the code: parameters file, package.xml, launch file, wheel."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import yaml

from stt_ros.config import STTConfig
from stt_ros.ros.settings import NodeSettings, node_model_defaults, to_ros_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_params_file_is_generated_from_the_config() -> None:
    text = (ROOT / "config" / "stt.yaml").read_text()
    assert text == to_ros_yaml(), "config/stt.yaml is stale: python -m stt_ros.ros.settings > config/stt.yaml"
    doc = yaml.safe_load(text)
    assert list(doc) == ["/**"], "the key must match the node in any namespace (stt_node: matches only /stt_node)"
    params = doc["/**"]["ros__parameters"]
    node_keys = set(NodeSettings.__dataclass_fields__)
    model = STTConfig.from_dict({k: v for k, v in params.items() if k not in node_keys})
    assert model == node_model_defaults() and (model.backend, model.precision) == ("auto", "auto")
    assert model.replace(backend="torch", precision="fp32") == STTConfig()  # else the library's defaults
    assert NodeSettings(**{k: v for k, v in params.items() if k in node_keys}) == NodeSettings()


def test_package_xml_declares_real_dependencies() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "stt_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for needed in ("rclpy", "rcl_interfaces", "ament_index_python", "sensor_msgs", "std_msgs", "std_srvs",
                   "diagnostic_msgs", "rosidl_default_generators", "rosidl_default_runtime", "launch", "launch_ros",
                   "python3-numpy", "python3-opencv", "python3-torch", "python3-pytest", "ament_cmake",
                   "ament_cmake_python"):
        assert needed in deps, needed
    # never imported (ROS 2's cv_bridge is not used: stt_ros.ros.conversions converts images itself);
    # python3-pytorch-pip pulls torchvision and is marked for migration; python3-safetensors has no key
    assert not deps & {"cv_bridge", "python3-pytorch-pip", "python3-safetensors"}
    assert root.find("member_of_group").text == "rosidl_interface_packages"
    assert root.find("export/build_type").text == "ament_cmake"


def test_ros_requirements_are_pinned_as_in_requirements_txt() -> None:
    """requirements-ros.txt (the pip packages without a rosdep key) pins what requirements.txt pins."""

    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text().splitlines()
        return dict(line.split("==") for line in (x.split("#")[0].strip() for x in lines) if line)

    ros, full = pins("requirements-ros.txt"), pins("requirements.txt")
    assert {"safetensors", "mcap"} <= set(ros)
    assert all(full.get(k) == v for k, v in ros.items()), (ros, full)


def test_launch_file_parses_and_names_the_node() -> None:
    text = (ROOT / "launch" / "stt.launch.py").read_text()
    tree = ast.parse(text)
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert 'executable="stt_node"' in text
    # every parameter the launch file overrides is a real node parameter (use_sim_time is rclpy's own)
    overrides = re.findall(r'"(\w+)": \("(\w+)", "(?:list|str|bool)"\)', text)
    assert {a for a, _ in overrides} == {"camera_names", "camera_topics", "model_config", "weights", "backend",
                                          "precision", "use_sim_time"}
    params = set(NodeSettings.__dataclass_fields__) | set(STTConfig.__dataclass_fields__) | {"use_sim_time"}
    assert {p for _, p in overrides} <= params


def test_launch_description_builds_on_a_ros2_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("launch_ros", reason="launch/launch_ros are not on PyPI or Debian; "
                        "make setup installs them from ../shared/ros2-launch where it exists")
    import importlib.util

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from stt_ros.config import BACKENDS, PRECISIONS

    if not (Path(sys.prefix) / "share" / "stt_ros" / "package.xml").exists():
        pytest.skip("stt_ros is not installed into this environment (make setup)")
    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    spec = importlib.util.spec_from_file_location("stt_launch", ROOT / "launch" / "stt.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    opaque = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    assert len(opaque) == 1
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert {"respawn", "respawn_delay", "use_sim_time", "log_level", "discovery_range"} <= set(declared)
    assert declared["backend"].choices == ["", *BACKENDS]
    assert declared["precision"].choices == ["", *PRECISIONS]
    # empty: the params file decides (the installed config/stt.yaml: auto), so a params file still wins
    assert declared["backend"].default_value[0].text == declared["precision"].default_value[0].text == ""
    context = LaunchContext()
    for entity in description.entities[:-1]:
        entity.visit(context)
    # discovery is left to the environment unless the argument is given
    assert context.launch_configurations["discovery_range"] == ""
    assert module._list("camera_names", "front") == ["front"]
    assert module._list("camera_names", "[front, rear]") == ["front", "rear"]
    with pytest.raises(module.LaunchArgumentError, match="camera_topics"):
        module._list("camera_topics", "[/a, /b")


@pytest.mark.slow
def test_pip_wheel_contains_both_packages(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("stt_ros-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "stt_ros/__init__.py" in names and "stt_ros/model/stt.py" in names
    assert "stt_train/__init__.py" in names
    assert not any(n.startswith(("test/", "bench/")) for n in names)


def test_rviz_layout_shows_the_node_outputs_with_matching_qos() -> None:
    rviz = yaml.safe_load((ROOT / "config" / "stt.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"]: d for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    camera = NodeSettings().camera_names[0]
    assert set(topics) == {f"/{camera}/overlay", f"/{camera}/color_mask"}
    reliability = {"reliable": "Reliable", "best_effort": "Best Effort"}[NodeSettings().output_reliability]
    assert all(d["Topic"]["Reliability Policy"] == reliability for d in topics.values())


def test_node_executable_for_ros2_run() -> None:
    script = ROOT / "scripts" / "stt_node"
    assert script.stat().st_mode & 0o111 and "stt_ros.ros.node import main" in script.read_text()
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "install(PROGRAMS ${CMAKE_CURRENT_BINARY_DIR}/stt_node DESTINATION lib/${PROJECT_NAME})" in cmake
    installed = Path(sys.prefix) / "lib" / "stt_ros" / "stt_node"
    if installed.exists():  # make setup installs it into the venv prefix
        # it runs with the interpreter it was built for, whatever python3 is first on PATH
        assert installed.read_text().splitlines()[0] == f"#!{sys.prefix}/bin/python"
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env["PATH"] = "/usr/bin:/bin"
        out = subprocess.run([str(installed), "--ros-args", "-p", "model:=nope"], capture_output=True,
                             text=True, timeout=120, env=env)
        assert out.returncode == 1 and "not a zoo model" in out.stdout + out.stderr


@pytest.mark.slow
def test_colcon_symlink_install_builds_the_package(tmp_path: Path) -> None:
    """`colcon build --symlink-install` in a workspace of its own, against this environment's ROS 2
    (the venv prefix: CMAKE_PREFIX_PATH/AMENT_PREFIX_PATH, as scripts/setup_env.sh builds)."""
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists() or not (Path(sys.prefix) / "share" / "rosidl_default_generators").exists():
        pytest.skip("colcon or the ROS 2 build wheels are not installed here (make setup)")
    src = tmp_path / "src" / "stt_ros"  # a copy: CMake refuses exported include dirs inside the source
    src.mkdir(parents=True)  # tree, and this checkout holds the venv
    for name in ("CMakeLists.txt", "package.xml", "setup.cfg", "setup.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("msg", "stt_ros", "stt_train", "scripts", "launch", "config"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = dict(os.environ, CMAKE_PREFIX_PATH=sys.prefix, AMENT_PREFIX_PATH=sys.prefix, MAKEFLAGS="-j2",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(colcon), "--log-base", "log", "build", "--symlink-install", "--base-paths", "src",
           "--event-handlers", "console_direct-", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
           "-DBUILD_TESTING=OFF", "-Wno-dev"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    prefix = tmp_path / "install" / "stt_ros"
    node = prefix / "lib" / "stt_ros" / "stt_node"
    assert os.access(node, os.X_OK) and node.read_text().splitlines()[0] == f"#!{sys.executable}"
    launch = prefix / "share" / "stt_ros" / "launch" / "stt.launch.py"
    assert launch.is_symlink() and launch.resolve() == (src / "launch" / "stt.launch.py").resolve()
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site / "stt_ros" / "msg" / "_temporal_consistency.py").exists()
    assert (site / "stt_ros" / "ros" / "node.py").resolve() == (src / "stt_ros" / "ros" / "node.py").resolve()
    assert (prefix / "share" / "stt_ros" / "package.xml").exists()
