"""`make demo` (python -m stt_ros.ros.demo) runs the pipeline and its messages cross DDS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros


def test_demo_runs_end_to_end() -> None:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "stt_ros.ros.demo", "--frames", "9", "--height", "64",
                          "--width", "128"], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "9/9 TemporalConsistency messages received over DDS" in out.stdout
    assert "domain " + env["ROS_DOMAIN_ID"] in out.stdout  # the test's own domain, not the default


def test_demo_reports_bad_arguments() -> None:
    out = subprocess.run([sys.executable, "-m", "stt_ros.ros.demo", "--height", "100"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "multiple of 32" in out.stderr
