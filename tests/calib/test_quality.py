"""calib.quality: the verdict every report shows next to bit-exactness."""
from __future__ import annotations

from calib.quality import verdict


def test_verdict_levels():
    assert verdict(32.0, 31.9, 28.0).level == "good"
    assert verdict(32.0, 31.2, 28.0).level == "fair"
    assert verdict(32.0, 30.0, 28.0).level == "degraded"
    v = verdict(32.0, 27.6, 28.4)
    assert v.level == "bad" and not v.ok and "below bicubic" in v.text and "-0.80 dB vs bicubic" in v.text
    assert verdict(32.0, None, 28.0).level == "unknown"
    assert verdict(32.0, 31.9, None).level == "good"
