"""Layering rule: nothing outside stt_ros/ros/ imports rclpy or a ROS message package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stt_ros", "stt_train")
ALLOWED_DIR = ROOT / "stt_ros" / "ros"

# Packages of the ROS runtime that never appear in the ament index as message packages.
ROS_RUNTIME = {"rclpy", "rosidl_runtime_py", "rosidl_parser", "launch", "launch_ros", "rosbag2_py",
               "cv_bridge", "ament_index_python", "rpyutils", "message_filters", "tf2_ros"}


def ros_package_names() -> set[str]:
    """Every ROS package name in the environment's ament index, plus the runtime set above."""
    names = set(ROS_RUNTIME)
    for base in map(Path, sys.path):
        index = base.parents[2] / "share" / "ament_index" / "resource_index" / "packages" if \
            len(base.parents) > 2 else None
        if index and index.is_dir():
            names.update(p.name for p in index.iterdir())
    names.discard("stt_ros")  # our own package is fine, its .msg subpackage is not
    return names


def forbidden(module: str, ros_names: set[str]) -> bool:
    top = module.split(".")[0]
    return top in ros_names or module == "stt_ros.msg" or module.startswith("stt_ros.msg.") \
        or module.startswith("stt_ros.ros")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def layered_files() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return [p for p in files if ALLOWED_DIR not in p.parents]


def test_static_imports_respect_layers() -> None:
    ros_names = ros_package_names()
    assert "sensor_msgs" in ros_names or "rclpy" in ros_names
    files = layered_files()
    assert files, "no package files found"
    offences = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
                for p in files for line, mod in imported_modules(p) if forbidden(mod, ros_names)]
    assert not offences, "ROS imports outside stt_ros/ros/:\n" + "\n".join(offences)


def test_detector_catches_ros_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import rclpy\nfrom sensor_msgs.msg import Image\nfrom stt_ros.msg import X\n"
                   "import importlib\nimportlib.import_module('std_msgs.msg')\n")
    ros_names = ros_package_names() | {"sensor_msgs", "std_msgs"}
    hits = [m for _, m in imported_modules(bad) if forbidden(m, ros_names)]
    assert {"rclpy", "sensor_msgs.msg", "stt_ros.msg", "std_msgs.msg"} <= set(hits)


def test_runtime_imports_load_no_ros() -> None:
    """Importing every layered module in a fresh interpreter loads no ROS module transitively."""
    modules = []
    for p in layered_files():
        rel = p.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        modules.append(".".join(parts))
    code = (
        "import importlib, sys\n"
        f"for m in {sorted(modules)!r}:\n"
        "    importlib.import_module(m)\n"
        f"ros = {sorted(ros_package_names())!r}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ros or m.startswith('stt_ros.msg'))\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"ROS modules loaded by the ROS-free layers:\n{out.stdout}"
