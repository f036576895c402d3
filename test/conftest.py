"""Test-wide fixtures.

DDS isolation: every test runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (nothing leaves the
loopback interface) and a ROS_DOMAIN_ID of its own, derived from the test id and this process,
so tests and concurrent runs never see each other's participants. Subprocesses a test starts
inherit both through os.environ.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

import pytest

# Set at import time too, so anything started before the first fixture is already confined.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 90))

# Hypothesis keeps caches (and, unless a test's settings say database=None, an example database)
# under ./.hypothesis: keep them out of the repository.
try:
    from hypothesis.configuration import set_hypothesis_home_dir
except ImportError:  # hypothesis is a development requirement only
    pass
else:
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"stt_ros_hypothesis_{os.getuid()}")


def domain_id_for(nodeid: str) -> int:
    """A ROS_DOMAIN_ID in 1..90 that differs between tests and between concurrent pytest runs."""
    return 1 + (zlib.crc32(nodeid.encode()) + os.getpid()) % 90


@pytest.fixture(scope="module")
def module_domain(request: pytest.FixtureRequest) -> int:
    """A domain in 91..101 for a node shared by a test module, apart from every per-test domain."""
    return 91 + (zlib.crc32(request.module.__name__.encode()) + os.getpid()) % 11


@pytest.fixture(autouse=True)
def dds_isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    domain = domain_id_for(request.node.nodeid)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `ros` need rclpy and the built messages. Where they are missing (a pip-only
    training machine) they skip with that reason; `make test` sets STT_REQUIRE_ROS=1 so a
    missing ROS there is a failure, never a silent skip."""
    try:
        import rclpy  # noqa: F401

        import stt_ros.msg  # noqa: F401
        return
    except ImportError as exc:
        reason = f"ROS 2 Python environment not available ({exc}); run `make setup`"
    if os.environ.get("STT_REQUIRE_ROS") == "1":
        raise pytest.UsageError(f"STT_REQUIRE_ROS=1 but {reason}")
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)
