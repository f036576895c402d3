"""Every key of package.xml resolves with rosdep, so `rosdep install --from-paths src --ignore-src -y`
works in a ROS 2 workspace (kilted and jazzy on Ubuntu 24.04 noble).

Runs rosdep against the ros/rosdistro snapshot in ../shared/rosdistro (no network); skips with the
reason where that folder or the rosdep command is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROSDEP_OFFLINE = ROOT.parent / "shared" / "rosdistro" / "rosdep-offline.sh"


def _env() -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if not ROSDEP_OFFLINE.exists():
        pytest.skip(f"{ROSDEP_OFFLINE} is absent (the rosdistro snapshot lies beside the repository on "
                    "the project's machines)")
    if shutil.which("rosdep", path=path) is None:
        pytest.skip("no rosdep command (requirements.txt installs it: make setup)")
    return dict(os.environ, PATH=path)


@pytest.mark.parametrize("distro", ["kilted", "jazzy"])
def test_every_package_xml_key_resolves(distro: str) -> None:
    env = dict(_env(), ROSDEP_DISTRO=distro)
    cmd = [str(ROSDEP_OFFLINE), "install", "--from-paths", ".", "--ignore-src", "--simulate", "-y",
           "--rosdistro", distro, "--os", "ubuntu:noble"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "Cannot locate rosdep definition" not in text, text
    assert "torchvision" not in text, text  # python3-pytorch-pip would pip-install it

