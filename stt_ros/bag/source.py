"""Reading rosbag2 bags (MCAP or sqlite3) with the ``rosbags`` library, damage included.

A bag folder with metadata.yaml opens with :class:`rosbags.rosbag2.Reader`. When that fails on
an MCAP bag (a recorder that crashed leaves no summary, metadata.yaml or end magic) or the path
is a bare ``.mcap`` file, the MCAP files are read sequentially with the ``mcap`` library's
stream reader instead, which returns every record up to the damage. Either way
:meth:`BagSource.messages` yields the readable messages and then raises one :class:`BagError`
that says where the bag broke, so callers keep the frames before the damage.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)


class BagError(Exception):
    """The bag cannot be read (or not to its end); the message says why and what was kept."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int  # messages in the bag (readable ones, for a damaged bag)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time: int  # ns, the time the recorder received it
    raw: bytes  # CDR with its 4-byte encapsulation header


def message_definitions() -> dict[str, str]:
    """stt_ros' own .msg definitions: from this checkout's msg/ or the installed share/stt_ros/msg."""
    import sys

    for folder in (Path(__file__).resolve().parents[2] / "msg", Path(sys.prefix) / "share" / "stt_ros" / "msg"):
        if folder.is_dir() and any(folder.glob("*.msg")):
            return {f"stt_ros/msg/{p.stem}": p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.msg"))}
    raise BagError("cannot find stt_ros' message definitions (msg/*.msg in the checkout or share/stt_ros/msg)")


def typestore():
    """The ROS 2 Kilted type store (Image, CompressedImage, ...) with stt_ros' own messages."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    for name, text in message_definitions().items():
        ts.register(get_types_from_msg(text, name))
    return ts


class _Bounded:
    """A file whose reads never ask for more than the bytes left: a corrupt MCAP length field
    then ends in the reader's EndOfFile instead of a multi-gigabyte allocation (a file object's
    read(n) allocates n bytes before it reads)."""

    def __init__(self, fh) -> None:  # noqa: ANN001
        self._fh = fh
        self._size = os.fstat(fh.fileno()).st_size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._fh.tell())
        return self._fh.read(left if n is None or n < 0 or n > left else n)

    def __getattr__(self, name: str):  # noqa: ANN204 (seek, tell, ... of the file)
        return getattr(self._fh, name)


class BagSource:
    """One rosbag2 bag (folder) or bare MCAP file, opened for reading."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fallback_note = ""  # why the sequential MCAP reader is used, if it is
        self._reader = None
        self._mcap_files: list[Path] = []
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag (give a rosbag2 folder or an .mcap file)")
        if self.path.is_file():
            if self.path.suffix != ".mcap":
                raise BagError(f"{self.path}: a bare {self.path.suffix or 'extensionless'} file is not a bag; give the "
                               f"rosbag2 folder (with metadata.yaml) or an .mcap file")
            self._mcap_files = [self.path]
        elif (self.path / "metadata.yaml").is_file():
            self._open_rosbags()
        else:
            self._mcap_files = sorted(self.path.glob("*.mcap"))
            if not self._mcap_files:
                found = ", ".join(sorted(p.name for p in self.path.iterdir())[:5]) or "nothing"
                raise BagError(f"{self.path}: no metadata.yaml and no .mcap file (found {found}); a sqlite3 bag "
                               f"needs its metadata.yaml (recreate it with `ros2 bag reindex`)")
            self.fallback_note = "no metadata.yaml: reading the MCAP files sequentially"
        if self._reader is None:
            self.topics = self._scan_mcap()

    # ------------------------------------------------------------------ rosbags
    def _open_rosbags(self) -> None:
        from rosbags.rosbag2 import Reader

        reader = Reader(self.path)
        try:
            reader.open()
        except Exception as exc:  # noqa: BLE001 (rosbags raises ReaderError, sqlite3, yaml, OSError ...)
            mcaps = sorted(self.path.glob("*.mcap"))
            if not mcaps:
                raise BagError(f"cannot open bag {self.path}: {exc}") from exc
            self._mcap_files = mcaps
            self.fallback_note = f"rosbags cannot open it ({exc}): reading the MCAP files sequentially"
            return
        self._reader = reader
        self.topics = {}
        for c in reader.connections:
            old = self.topics.get(c.topic)
            self.topics[c.topic] = TopicInfo(c.topic, c.msgtype, c.msgcount + (old.count if old else 0))

    # ------------------------------------------------------------------ sequential MCAP
    def _mcap_stream(self) -> Iterator[TopicInfo | BagMessage]:
        """Every channel (as a TopicInfo with count 0) and message of the MCAP files in file
        order; BagError at the damage."""
        from mcap.exceptions import McapError
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        schemas: dict[int, str] = {}
        channels: dict[int, TopicInfo] = {}
        for path in self._mcap_files:
            try:
                with open(path, "rb") as fh:
                    for rec in StreamReader(_Bounded(fh), skip_magic=False).records:
                        if isinstance(rec, Message) and rec.channel_id in channels:
                            ch = channels[rec.channel_id]
                            yield BagMessage(ch.name, ch.msgtype, rec.log_time, bytes(rec.data))
                        elif isinstance(rec, Channel):
                            channels[rec.id] = TopicInfo(rec.topic, schemas.get(rec.schema_id, ""), 0)
                            yield channels[rec.id]
                        elif isinstance(rec, Schema):
                            schemas[rec.id] = rec.name
            except (McapError, OSError, ValueError, EOFError, OverflowError, struct.error, KeyError, IndexError) as exc:
                detail = str(exc) or type(exc).__name__
                raise BagError(f"{path.name} is truncated or corrupt ({type(exc).__name__}: {detail})") from exc

    def _scan_mcap(self) -> dict[str, TopicInfo]:
        """Topics and readable message counts (one pass; a damaged file ends the count)."""
        found: dict[str, TopicInfo] = {}
        counts: dict[str, int] = {}
        try:
            for item in self._mcap_stream():
                if isinstance(item, TopicInfo):
                    found.setdefault(item.name, item)
                else:
                    counts[item.topic] = counts.get(item.topic, 0) + 1
        except BagError:
            pass  # messages() reports the damage when it reaches it
        return {t: TopicInfo(t, i.msgtype, counts.get(t, 0)) for t, i in found.items()}

    # ------------------------------------------------------------------ reading
    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None) in the bag's order; raises :class:`BagError`
        after the last readable message of a damaged bag."""
        wanted = set(self.topics) if topics is None else set(topics)
        n = 0
        if self._reader is not None:
            conns = [c for c in self._reader.connections if c.topic in wanted]
            try:
                for conn, log_time, raw in self._reader.messages(connections=conns):
                    n += 1
                    yield BagMessage(conn.topic, conn.msgtype, log_time, bytes(raw))
            except Exception as exc:  # noqa: BLE001 (any storage error ends the bag here)
                raise BagError(f"bag {self.path} is damaged after {n} messages ({type(exc).__name__}: {exc}); "
                               f"the messages before the damage were used") from exc
            return
        try:
            for m in self._mcap_stream():
                if isinstance(m, BagMessage) and m.topic in wanted:
                    n += 1
                    yield m
        except BagError as exc:
            raise BagError(f"bag {self.path} is damaged after {n} messages: {exc}; the messages before the damage "
                           f"were used") from exc

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
