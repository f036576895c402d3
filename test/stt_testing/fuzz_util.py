"""Shared strategies and helpers of the fuzz tests (no ROS imports)."""

from __future__ import annotations

import os

from hypothesis import strategies as st

#: multiplier of every fuzz test's example count (1 in CI; e.g. STT_FUZZ_SCALE=20 for a long session)
SCALE = max(1, int(os.environ.get("STT_FUZZ_SCALE", "1")))


def examples(n: int) -> int:
    """``n`` examples, times STT_FUZZ_SCALE."""
    return n * SCALE


#: what YAML or a ROS parameter can hand us: scalars of every kind, extremes included
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", "cpu", "cuda", "stt_bise18", "1e-3", "nan", "~", "null"]),
)
#: nested lists and mappings of scalars (what a YAML document can hold)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
