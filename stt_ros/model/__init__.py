"""Pure PyTorch networks: no ROS, no file or network I/O.

Two modules here import no torch, so a config or an exported-graph backend can use them without
it: :mod:`~stt_ros.model.specs` (the zoo's model names) and :mod:`~stt_ros.model.graph_contract`
(the exported step's I/O names, metadata keys and signature reader, the one place that reads an
ONNX file). This ``__init__`` imports nothing.
"""
