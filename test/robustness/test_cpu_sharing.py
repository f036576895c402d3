"""The node's processes make idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) before torch
loads OpenMP: with libgomp's default, any other CPU load made inference ~30x slower
(bench/bench_cpu_contention.py measures it; docs/ROBUSTNESS.md has the figures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ("import os, sys\nimport stt_ros.ros\nassert 'torch' not in sys.modules, 'torch was loaded first'\n"
         "import torch\ntorch.ones(2) + 1\nprint(os.environ.get('OMP_WAIT_POLICY'))\n")


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_ros_layer_sets_a_passive_openmp_wait_policy_before_torch(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given  # a user's choice is kept
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected

