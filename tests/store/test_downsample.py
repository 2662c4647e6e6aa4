"""Downsampling a metric series (pure function): never more than asked, always the first and last
point, every bucket's extremes, so the global min and max survive, in step order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from db.store import downsample

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=3000)


@given(values, st.integers(1, 500))
def test_downsample_properties(series, max_points):
    points = [(step * 10, value, None) for step, value in enumerate(series)]
    out = downsample(points, max_points)
    assert len(out) <= max(max_points, 0) or len(points) <= max_points
    assert [p[0] for p in out] == sorted({p[0] for p in out})  # step order, no repeats
    assert set(out) <= set(points)
    if len(points) <= max_points:
        assert out == points
    elif points and max_points >= 2:
        assert out[0] == points[0] and out[-1] == points[-1]
        if max_points >= 4:
            assert min(p[1] for p in out) == min(series)
            assert max(p[1] for p in out) == max(series)


def test_downsample_uses_the_budget():
    points = [(i, float(i % 7), None) for i in range(100_000)]
    out = downsample(points, 2000)
    assert 1900 <= len(out) <= 2000
