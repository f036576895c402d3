"""`make demo`: generates (then reuses) a SynthDrive bag and replays it through stt_node."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from stt_testing.bagtools import ROOT

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def make_demo(tmp_path: Path) -> subprocess.CompletedProcess:
    args = ["make", "--no-print-directory", "demo", "DEMO_FRAMES=8", f"DEMO_DATA={tmp_path / 'data'}",
            f"DEMO_OUT={tmp_path / 'out'}", f"DEMO_DOMAIN={os.environ['ROS_DOMAIN_ID']}", "DEMO_ARGS=--no-progress"]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_make_demo_reports_and_reuses_its_bag(tmp_path: Path) -> None:
    first = make_demo(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote 1 sequences x 8 frames" in first.stdout
    m = re.search(r"camera: (\d+)/8 frames processed, (\d+) dropped, 0 rejected, 0 resets; mIoU [\d.]+%, TC [\d.]+%",
                  first.stdout)
    assert m and int(m[1]) + int(m[2]) == 8 and int(m[1]) >= 2, first.stdout
    for label, path in (("report", "report.md"), ("output bag", "bag"), ("overlays", "overlays")):
        assert re.search(rf"stt-bag-eval: {label} +{re.escape(str(tmp_path / 'out' / path))}", first.stdout)
        assert (tmp_path / "out" / path).exists()
    assert "through-node" in (tmp_path / "out" / "report.md").read_text()
    second = make_demo(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "wrote 1 sequences" not in second.stdout  # the cached bag
