"""Every TensorRT name the backend uses exists in the real bindings of TensorRT 10 and of 11.

No TensorRT code runs and no GPU is needed: ``scripts/install_trt_bindings.sh`` (run by
setup_env.sh) installs the ``tensorrt-cu12-bindings`` wheels of 10.16.1.11 and 11.4.0.106 without
their libraries; ``import tensorrt_bindings`` then lacks only the 9 C entry points of libnvinfer,
libnvinfer_plugin and libnvonnxparser, which stub shared libraries (built here with ``cc``,
every function returning 0) provide. In a subprocess with the stubs on LD_LIBRARY_PATH the module
imports, and the test checks with ``hasattr`` each class, enum member, method and property the
backend touches. Those names come from the backend's own code (an ast walk of
stt_ros/runtime/tensorrt_*.py): every ``trt.X.Y`` chain, and every attribute used on a variable
holding a TensorRT object (:data:`RECEIVERS`) or on what a TensorRT method returned
(:data:`RETURNS`), so a new call is checked as soon as it is written.

The bindings directories are absent on a machine that did not run the setup step: the test skips
and says so, except where ``make test`` runs (STT_REQUIRE_ROS=1, or STT_REQUIRE_TRT_BINDINGS=1),
where it fails.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = {10: "10.16.1.11", 11: "11.4.0.106"}  # as scripts/install_trt_bindings.sh installs them
#: variable (or ``self.``/``state.`` attribute) names that hold a TensorRT object in tensorrt_*.py
RECEIVERS = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
             "bconf": "IBuilderConfig", "cache": "ITimingCache", "runtime": "Runtime", "engine": "ICudaEngine",
             "context": "IExecutionContext", "ctx": "IExecutionContext", "logger": "Logger"}
#: TensorRT methods and the class of what they return
RETURNS = {"create_network": "INetworkDefinition", "create_builder_config": "IBuilderConfig",
           "create_timing_cache": "ITimingCache", "get_timing_cache": "ITimingCache",
           "build_serialized_network": "IHostMemory", "deserialize_cuda_engine": "ICudaEngine",
           "create_execution_context": "IExecutionContext"}
#: what 11 removed (and 10 still has): the emulation (trt_emulation.REMOVED_IN_11) must agree
REMOVED_IN_11 = ("BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.int8_calibrator",
                 "IInt8EntropyCalibrator2", "QuantizationFlag")
_ENTRY = re.compile(r"^(create\w+_INTERNAL|get\w+Registry|getNvOnnxParserVersion|initLibNvInferPlugins)$")


def _chain(node: ast.AST) -> list[str] | None:
    """['trt', 'BuilderFlag', 'FP16'] for ``trt.BuilderFlag.FP16``; None for other expressions."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _receiver(node: ast.AST) -> str | None:
    """The TensorRT class an expression holds: a known name, ``self.engine``, or a TensorRT call's result."""
    if isinstance(node, ast.Name):
        return RECEIVERS.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "state"):
        return RECEIVERS.get(node.attr)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return RETURNS.get(node.func.attr)
    return None


def used_names() -> set[str]:
    """Dotted TensorRT names (``BuilderFlag.FP16``, ``IBuilderConfig.set_timing_cache``) that
    stt_ros/runtime/tensorrt_*.py uses."""
    names: set[str] = set()
    for path in sorted((ROOT / "stt_ros" / "runtime").glob("tensorrt_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            chain = _chain(node)
            if chain and chain[0] == "trt" and len(chain) >= 2:
                # the longest chain only: trt.Logger.WARNING also checks trt.Logger
                names.add(".".join(chain[1:3]))
            cls = _receiver(node.value)
            if cls is not None:
                names.add(f"{cls}.{node.attr}")
    # the sub-chains (trt.Logger of trt.Logger.WARNING) are checked with them
    return names


def bindings_dir() -> Path:
    return Path(os.environ.get("STT_TRT_BINDINGS", ROOT / ".venv" / "trt-bindings"))


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("STT_REQUIRE_TRT_BINDINGS") == "1" or os.environ.get("STT_REQUIRE_ROS") == "1":
        pytest.fail(f"the TensorRT API check must run here but {reason} (run scripts/install_trt_bindings.sh)")
    pytest.skip(reason)


def stub_libraries(so: Path, out: Path) -> tuple[list[str], list[str]]:
    """Build stubs of the libraries ``so`` needs (its NEEDED libnv* entries), each exporting every
    TensorRT entry point it imports; (library names, entry points)."""
    needed = re.findall(r"\(NEEDED\).*\[(libnv[^\]]+)\]", subprocess.run(
        ["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout)
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True,
                               check=True).stdout.split()
    entries = sorted({s for s in undefined if _ENTRY.match(s)})
    source = out / "stub.c"
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in entries))
    for lib in needed:
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out / lib), f"-Wl,-soname,{lib}", str(source)],
                       check=True, capture_output=True)
    return needed, entries


_PROBE = """
import json, sys
import tensorrt_bindings as trt
found = {}
for name in sys.argv[1:]:
    obj, ok = trt, True
    for part in name.split("."):
        ok = ok and hasattr(obj, part)
        obj = getattr(obj, part, None)
    found[name] = ok
print(json.dumps({"version": trt.__version__, "found": found}))
"""


@pytest.mark.parametrize("major", sorted(VERSIONS))
def test_backend_uses_only_names_the_real_bindings_have(major: int, tmp_path: Path) -> None:
    """Import the real bindings of TensorRT ``major`` against stub libraries (nothing of TensorRT
    runs: no builder, no engine, no GPU) and check every name the backend uses with hasattr."""
    site = bindings_dir() / f"trt{major}"
    so = site / "tensorrt_bindings" / "tensorrt.so"
    if not so.is_file():
        _skip_or_fail(f"the TensorRT {VERSIONS[major]} bindings are not installed in {site}")
    for tool in ("cc", "nm", "readelf"):
        if shutil.which(tool) is None:
            _skip_or_fail(f"{tool} is not on PATH (the stub libraries are built with it)")
    needed, entries = stub_libraries(so, tmp_path)
    assert len(entries) == 9 and {lib.split(".so")[0] for lib in needed} == \
        {"libnvinfer", "libnvinfer_plugin", "libnvonnxparser"}, (needed, entries)
    names = sorted(used_names())
    probe = [*names, *REMOVED_IN_11, "nptype", "IHostMemory"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path), "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", _PROBE, *probe], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["version"] == VERSIONS[major]
    found = result["found"]
    print(f"TensorRT {result['version']}: {sum(found[n] for n in names)}/{len(names)} names the backend uses: "
          + ", ".join(names))
    missing = [n for n in names if not found[n]]
    assert not missing, f"TensorRT {VERSIONS[major]} lacks what the backend uses: {missing}"
    # the facts the emulation is built on
    assert [n for n in REMOVED_IN_11 if found[n]] == ([] if major >= 11 else list(REMOVED_IN_11))


def test_the_walk_finds_what_the_backend_calls() -> None:
    """The ast walk sees the build, parse, timing-cache and run calls (a renamed variable would hide them)."""
    from stt_testing.trt_emulation import REMOVED_IN_11 as EMULATED_REMOVED

    names = used_names()
    for name in ("Builder.create_network", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
                 "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.set_timing_cache",
                 "ITimingCache.serialize", "OnnxParser.parse", "OnnxParser.num_errors",
                 "Runtime.deserialize_cuda_engine", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_dtype",
                 "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3",
                 "TensorIOMode.INPUT", "MemoryPoolType.WORKSPACE", "Logger.WARNING", "nptype"):
        assert name in names, (name, sorted(names))
    assert not names & set(REMOVED_IN_11)  # nothing 11 removed
    assert set(EMULATED_REMOVED) == set(REMOVED_IN_11)
