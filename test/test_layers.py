"""Layering rules: nothing outside stt_ros/ros/ imports rclpy or a ROS message package; no import
cycle inside stt_ros/ and stt_train/; the config and the onnxruntime backend load without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

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


# ---------------------------------------------------------------------------- import cycles
def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> source file of every module of ``packages`` under ``root``."""
    out = {}
    for pkg in packages:
        for p in (root / pkg).rglob("*.py"):
            rel = p.relative_to(root).with_suffix("")
            out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The modules of ``modules`` that ``name`` imports -> first line. Every import statement
    counts, wherever it stands (module level, inside a function, under ``if TYPE_CHECKING``):
    a lazy import closes a cycle as surely as a top-level one, only later. ``from pkg import x``
    is an import of ``pkg.x`` when that is a module, else of ``pkg``; relative imports resolve
    against the module's package; an import of a module outside ``modules`` resolves to the
    longest prefix inside it (none: ignored)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [known(a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base) for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
            targets = [known(node.args[0].value)]
        for target in targets:
            if target is not None and target != name:
                found.setdefault(target, node.lineno)
    return found


def import_cycles(root: Path, packages: tuple[str, ...]) -> list[str]:
    """One cycle (``a:line -> b:line -> a``) per strongly connected group of modules."""
    modules = module_names(root, packages)
    graph = {name: module_imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while not group or w != v:
                w = stack.pop()
                group.add(w)
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:  # the shortest way from the group's first module back to itself
        start = min(group)
        came: dict[str, str] = {}
        queue = deque([start])
        while start not in came:
            v = queue.popleft()
            for w in sorted(graph[v]):
                if w in group and w not in came:
                    came[w] = v
                    queue.append(w)
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(came[path[-1]])
        path.reverse()
        cycles.append(" -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:], strict=False))
                      + f" -> {start}")
    return cycles


def test_no_import_cycles() -> None:
    cycles = import_cycles(ROOT, PACKAGES)
    assert not cycles, "import cycles (move the shared part into a module both can import):\n" + "\n".join(cycles)


def test_cycle_detector_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "sub/__init__.py", "leaf.py"):
        (pkg / f).write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")  # b is a module: the edge goes to pkg.sub.b
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")  # lazy and relative
    (pkg / "c.py").write_text("import os\nimport pkg.leaf\nfrom pkg import a\ng = 1\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("import importlib\nimportlib.import_module('pkg.d')\n")
    cycles = import_cycles(tmp_path, ("pkg",))
    assert sorted(cycles) == ["pkg.a (line 1) -> pkg.sub.b (line 2) -> pkg.c (line 3) -> pkg.a",
                              "pkg.d (line 3) -> pkg.e (line 2) -> pkg.d"]
    (pkg / "c.py").write_text("import pkg.leaf\n")
    assert import_cycles(tmp_path, ("pkg",)) == ["pkg.d (line 3) -> pkg.e (line 2) -> pkg.d"]


# ---------------------------------------------------------------------------- torch-free imports
@pytest.mark.parametrize("code", ["from stt_ros.config import STTConfig; STTConfig(); STTConfig(model='bise18')",
                                  "import stt_ros.runtime.onnx_backend",
                                  "import stt_ros.runtime.tensorrt_backend, stt_ros.runtime.factory",
                                  "from stt_ros.runtime import StreamingSegmenter, SegResult, Backend"])
def test_loads_without_torch(code: str) -> None:
    """Building a config or loading an exported-graph backend (a deployment without torch) never
    imports torch, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\nprint('torch' in sys.modules)"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"{code!r} imports torch"


def test_the_node_starts_without_the_training_extra() -> None:
    """cityscapesscripts is a [train] dependency; the node's palette and class names are inline."""
    code = ("import sys\nsys.modules['cityscapesscripts'] = None  # as if not installed: importing it fails\n"
            "import stt_ros.ros.node\nfrom stt_ros.viz import class_names, palette\n"
            "assert palette('cityscapes')[0].tolist() == [128, 64, 128] and class_names(19)[18] == 'bicycle'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    if "No module named 'rclpy'" in out.stderr:
        pytest.skip("rclpy is not installed (the node's layer needs it)")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
