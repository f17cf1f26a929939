"""calib package: capture, calibration and export of float SR models.

``calib.quantize`` (:func:`calib.api.quantize`) is the public entry point; it is imported on first use so
that ``import calib`` stays cheap.
"""


def __getattr__(name):
    if name == "quantize":
        from calib.api import quantize

        return quantize
    raise AttributeError(f"module 'calib' has no attribute {name!r}")
