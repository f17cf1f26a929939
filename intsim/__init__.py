"""intsim package."""


def __getattr__(name: str):
    # ``intsim.__version__`` is looked up on first use: importlib.metadata takes about 70 ms to
    # import, which every ``import intsim.<module>`` would otherwise pay.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("intsim")
        except PackageNotFoundError:  # a source tree that was never installed: no metadata to read
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
