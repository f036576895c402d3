"""The TensorRT engine cache (pure Python: no TensorRT needed to decide whether to rebuild).

The plan is stored beside the ONNX file as ``<onnx stem>.<precision>.<gpu>.trt<version>.plan``
(e.g. ``stt.fp16.nvidia-a40.trt10.3.0.plan``) with a ``.json`` sidecar holding the ONNX file's
SHA-256, precision, GPU, TensorRT version and, for int8, the calibration source
(:class:`EngineKey`). The plan is rebuilt when the file is missing or any of those differ
(:func:`rebuild_reason`); plan and sidecar are written atomically, sidecar last.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: suffixes of a prebuilt plan a config's weights may name instead of the .onnx
PLAN_SUFFIXES = (".plan", ".engine")


def gpu_slug(name: str) -> str:
    """File-name form of a GPU name: 'NVIDIA A40' -> 'nvidia-a40'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def engine_cache_path(onnx_path: str | Path, precision: str, gpu_name: str, trt_version: str) -> Path:
    """``<dir>/<stem>.<precision>.<gpu>.trt<version>.plan`` beside the ONNX file."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.{gpu_slug(gpu_name)}.trt{trt_version}.plan")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything a cached plan depends on; a difference in any field means rebuild."""

    onnx_sha256: str
    precision: str
    gpu: str
    compute_capability: str
    tensorrt: str
    calibration: str = ""  # int8: description of the calibration frames


def sidecar_path(plan_path: str | Path) -> Path:
    return Path(str(plan_path) + ".json")


def read_sidecar(plan_path: str | Path) -> dict[str, Any] | None:
    """The plan's sidecar as a dict; None when it is missing or unreadable."""
    try:
        saved = json.loads(sidecar_path(plan_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return saved if isinstance(saved, dict) else None


def rebuild_reason(plan_path: str | Path, key: EngineKey) -> str | None:
    """Why the plan at ``plan_path`` cannot be used for ``key`` (None: it can)."""
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        return f"no cached plan {plan_path.name}"
    saved = read_sidecar(plan_path)
    if saved is None:
        return f"{sidecar_path(plan_path).name} is missing or unreadable"
    diffs = [f"{name} {saved.get(name)!r} -> {value!r}" for name, value in asdict(key).items()
             if saved.get(name) != value]
    if diffs:
        return "cached plan was built for other inputs: " + "; ".join(diffs)
    return None


def saved_field(plan_path: str | Path, name: str) -> str:
    """One field of the plan's sidecar ("" when there is none)."""
    return str((read_sidecar(plan_path) or {}).get(name, ""))


def write_plan(plan_path: str | Path, plan: bytes, key: EngineKey, extra: dict[str, Any] | None = None) -> None:
    """Write plan and sidecar atomically (sidecar last: a plan without one is rebuilt)."""
    from stt_ros.weights import atomic_write

    atomic_write(plan_path, lambda tmp: Path(tmp).write_bytes(plan))
    meta = {**asdict(key), **(extra or {})}
    atomic_write(sidecar_path(plan_path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
