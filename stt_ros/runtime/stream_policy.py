"""When a camera stream's ring buffer must be reset: one rule for the node and bag evaluation.

Past frames only help when they show the same scene moments before. The buffer is reset when the
image size changes (the features no longer line up), when the header stamp goes backwards (a bag
restarted, a clock jumped) or when it jumps forward by more than ``max_gap_s`` (frames were lost).
Frames the node or the evaluation dropped itself (latest frame wins) are not a gap in the camera:
:meth:`StreamPolicy.observe` records them.
"""

from __future__ import annotations

#: default of the node's max_frame_gap_s parameter and of stt-bag-eval --max-frame-gap
DEFAULT_MAX_GAP_S = 1.0


class StreamPolicy:
    """Feed every frame's stamp and size to :meth:`check`; it says why to reset, or None."""

    def __init__(self, max_gap_s: float = DEFAULT_MAX_GAP_S) -> None:
        self.max_gap_s = max_gap_s
        self.last_stamp: float | None = None
        self.last_size: tuple[int, int] | None = None

    def check(self, stamp: float, size: tuple[int, int]) -> str | None:
        reason = None
        if self.last_stamp is not None:
            if size != self.last_size:
                reason = f"image size changed {self.last_size} -> {size}"
            elif stamp < self.last_stamp:
                reason = f"stamp went backwards by {self.last_stamp - stamp:.3f} s"
            elif stamp - self.last_stamp > self.max_gap_s:
                reason = f"gap of {stamp - self.last_stamp:.3f} s > max_frame_gap_s"
        self.last_stamp, self.last_size = stamp, size
        return reason

    def observe(self, stamp: float) -> None:
        """A frame of the stream that was not processed (the caller dropped it): the stream had no gap
        up to ``stamp``, so the next gap is measured from there. Never resets anything."""
        if self.last_stamp is not None and stamp > self.last_stamp:
            self.last_stamp = stamp

    def forget(self) -> None:
        self.last_stamp = self.last_size = None
