"""Robustness tests: fuzzing (hypothesis), fault injection over real DDS, hostile files.

Hypothesis runs with a bounded number of examples, no deadline (the CPU is shared) and no example
database; its caches go to the temporary directory (test/conftest.py), so nothing is written into
the repository (.hypothesis/). A failure prints the seed
(``print_blob``) to reproduce it with ``@reproduce_failure``. ``STT_FUZZ_SCALE=<n>`` multiplies
every fuzz test's example count (stt_testing.fuzz_util.examples), e.g. 20 for a long local fuzzing session.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("stt_robustness", database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.load_profile("stt_robustness")
