"""Helpers shared by the test suite (and the benchmarks): a node subprocess harness, bag tools,
the TensorRT emulation and fuzzing settings. ``test/`` is on pytest's ``pythonpath``
(pyproject.toml), so tests import ``stt_testing.<module>``; benchmarks put ``test/`` on sys.path."""
