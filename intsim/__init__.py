"""intsim: a bit-exact integer simulator of quantized super-resolution networks.

The public API (README "Python API"): ``intsim.__version__``, ``intsim.load_artifact(path)``,
``intsim.run(artifact, image)`` and ``intsim.verify(artifact, golden_dir)`` (:mod:`intsim.api`);
calibration is ``calib.quantize``. Each name is imported on first use, so that ``import intsim`` and
``import intsim.<module>`` stay cheap (no numba, no importlib.metadata until asked for).
"""

__all__ = ["__version__", "load_artifact", "run", "verify"]

#: public name → the module that defines it
_API = {"load_artifact": "intsim.artifact", "run": "intsim.api", "verify": "intsim.api"}


def _version() -> str:
    # importlib.metadata takes about 70 ms to import, which every ``import intsim.<module>`` would
    # otherwise pay
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("intsim")
    except PackageNotFoundError:  # a source tree that was never installed: no metadata to read
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        return _version()
    if name in _API:
        from importlib import import_module

        value = getattr(import_module(_API[name]), name)
        globals()[name] = value  # later lookups find it without coming here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
