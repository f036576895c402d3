"""The package's files agree with the code: parameters file, package.xml, launch file, wheel."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import yaml

from stt_ros.config import STTConfig, to_ros_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_params_file_is_generated_from_the_config() -> None:
    text = (ROOT / "config" / "stt.yaml").read_text()
    assert text == to_ros_yaml(), "config/stt.yaml is stale: python -m stt_ros.config > config/stt.yaml"
    params = yaml.safe_load(text)["stt_node"]["ros__parameters"]
    assert STTConfig.from_dict(params) == STTConfig()


def test_package_xml_declares_real_dependencies() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "stt_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for needed in ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rosidl_default_generators",
                   "rosidl_default_runtime", "cv_bridge", "python3-numpy", "python3-opencv", "python3-pytest",
                   "ament_cmake", "ament_cmake_python"):
        assert needed in deps, needed
    assert root.find("member_of_group").text == "rosidl_interface_packages"
    assert root.find("export/build_type").text == "ament_cmake"


def test_launch_file_parses_and_names_the_node() -> None:
    tree = ast.parse((ROOT / "launch" / "stt.launch.py").read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert "stt_node" in (ROOT / "launch" / "stt.launch.py").read_text()


@pytest.mark.skipif(not (ROOT / ".venv").exists(), reason="needs the build environment (make setup)")
def test_launch_runs_under_ros2_launch() -> None:
    pytest.skip("launch/launch_ros are not on PyPI or Debian (see DESIGN.md); `ros2 launch stt_ros "
                "stt.launch.py` is exercised on a ROS 2 install only")


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
