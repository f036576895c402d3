"""Streaming inference without ROS: preprocessing, per-stream ring buffers, backends, postprocessing.

Typical use::

    cfg = STTConfig(model="stt_bise18", input_height=512, input_width=1024)
    backend = create_backend(cfg)                 # one shared model
    front = StreamingSegmenter(backend)           # one segmenter (and ring buffer) per camera
    result = front.process(rgb_image)             # result.mask: class ids at the camera's size
"""

from stt_ros.runtime.backend import Backend, BackendOutput, StreamState, create_backend
from stt_ros.runtime.preprocess import Geometry, Preprocessor, postprocess
from stt_ros.runtime.ring_buffer import RingBuffer
from stt_ros.runtime.segmenter import SegResult, StreamingSegmenter

__all__ = ["Backend", "BackendOutput", "Geometry", "Preprocessor", "RingBuffer", "SegResult", "StreamState",
           "StreamingSegmenter", "create_backend", "postprocess"]
