"""Robustness cases: environment — output locations that cannot be written (see harness.py).

A read-only or full file system, a path component that is a file, a name too long for the file
system: the environment, not a bug, so exit 2 with one line naming the path, checked before the
work where it can be (nothing computed in vain, nothing half-written). Read-only and full file
systems are simulated (:func:`_refusing` and :func:`_disk_full`) while the command runs: root
writes through permission bits, and a full disk cannot be made on demand.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from tests.robustness.harness import Case, Setup, out_dir, valid_artifact, valid_golden, valid_image

_UPFRONT = "output locations are checked before any work; a refused one costs nothing and leaves nothing"
_ALL_OR_NOTHING = ("files are written to temp files beside their targets and renamed only when all are "
                   "written: a write that fails leaves no file, temp file or folder of this command")
_LONG = "n" * 300  # longer than the 255 bytes of a name on common file systems


def _refusing(folder: Path, err: int):
    """While the command runs, creating a file or folder under ``folder`` fails with ``err``: EROFS as
    on a read-only file system, EACCES as in a folder without write permission."""

    def under(path) -> bool:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(folder)

    @contextlib.contextmanager
    def fault():
        real_open, real_mkdir = os.open, os.mkdir

        def open_(path, flags, mode=0o777, *, dir_fd=None):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
                raise OSError(err, os.strerror(err), os.fsdecode(path))
            return real_open(path, flags, mode, dir_fd=dir_fd)

        def mkdir_(path, mode=0o777, *, dir_fd=None):
            if under(path):
                raise OSError(err, os.strerror(err), os.fsdecode(path))
            return real_mkdir(path, mode, dir_fd=dir_fd)

        os.open, os.mkdir = open_, mkdir_
        try:
            yield
        finally:
            os.open, os.mkdir = real_open, real_mkdir

    return fault


@contextlib.contextmanager
def _disk_full():
    """While the command runs the disk is full: a file's data fails to reach it (ENOSPC at os.fsync, as
    delayed allocation reports it); creating empty files and folders still works."""
    real_fsync = os.fsync

    def fsync(fd):
        fileno = fd if isinstance(fd, int) else fd.fileno()
        if stat.S_ISREG(os.fstat(fileno).st_mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    os.fsync = fsync
    try:
        yield
    finally:
        os.fsync = real_fsync


def _a_file(folder: Path) -> Path:
    f = folder / "notes.txt"
    f.write_text("a file where a folder is expected\n")
    return f


def _ro(folder: Path) -> Path:
    d = folder / "ro"
    d.mkdir(exist_ok=True)
    return d


def _path(template: str, folder: Path) -> Path:
    """``template`` over {dir} (the scratch folder), {file} (an existing file), {folder} (an existing
    folder), {ro} (the folder a fault refuses writes in) and {long} (a 300-character name)."""
    a_folder = folder / "a_folder"
    a_folder.mkdir(exist_ok=True)
    keys = {"dir": folder, "file": _a_file(folder), "folder": a_folder, "ro": _ro(folder), "long": _LONG}
    return Path(template.format(**keys))


# -------------------------------------------------------------------- intsim run


def _run(out: str, counters: str | None = None, fault: str | None = None):
    """``intsim run ART IMG -o OUT [--counters C]`` (templates of :func:`_path`; {dir}/out holds an
    earlier result)."""

    def build(folder: Path) -> Setup:
        art, img = valid_artifact(folder), valid_image(folder)
        o = _path(out, folder)
        if o == folder / "out":
            out_dir(folder)
        argv, outputs = ["run", art, img, "-o", o], [o]
        names = str(o)
        if counters is not None:
            c = _path(counters, folder)
            argv += ["--counters", c]
            outputs.append(c)
            names = str(c)
        if _LONG in names:  # a name too long cannot even be looked at: watch the whole scratch folder
            outputs = [folder]
        return Setup(argv, names, outputs, _fault(fault, folder))

    return build


def _fault(which: str | None, folder: Path):
    if which == "disk-full":
        return _disk_full
    if which in ("read-only", "denied"):
        return _refusing(_ro(folder), errno.EROFS if which == "read-only" else errno.EACCES)
    return None


# -------------------------------------------------------------------- other commands


def _golden(out: str, fault: str | None = None):
    def build(folder: Path) -> Setup:
        art, img = valid_artifact(folder), valid_image(folder)
        o = _path(out, folder)
        if o.name == "foreign":
            out_dir(folder, "foreign")
        return Setup(["golden", art, img, "-o", o], str(o), [o], _fault(fault, folder))

    return build


def _vectors(out: str, fault: str | None = None):
    def build(folder: Path) -> Setup:
        g = valid_golden(folder)
        o = _path(out, folder)
        return Setup(["export-vectors", g, "-o", o], str(o), [o], _fault(fault, folder))

    return build


def _cost(out: str, fault: str | None = None):
    def build(folder: Path) -> Setup:
        art, img = valid_artifact(folder), valid_image(folder)
        o = _path(out, folder)
        if o == folder / "cost.json":
            o.write_text('{"earlier": "result"}')
        return Setup(["cost", art, "--images", img, "-o", o], str(o), [o], _fault(fault, folder))

    return build


def _state_dir_is_a_file(folder: Path) -> Setup:
    cal = folder / "calib"
    cal.mkdir()
    valid_image(cal, h=32, w=32)
    out = folder / "m.intsim"
    state = _a_file(folder)
    return Setup(["calibrate", "--model", "tiny_sr", "--scale", "2", "--bits", "W4A4", "--calib-data", cal,
                  "--state-dir", state, "-o", out], str(state), [out, state])


def _sweep_out_is_a_file(folder: Path) -> Setup:
    out = _a_file(folder)
    spec = folder / "sweep.toml"
    spec.write_text(f'[sweep]\nout = "{out.name}"\nmodels = ["imdn:4"]\nbits = ["W8A8"]\nmethods = ["minmax"]\n'
                    'datasets = ["Set5"]\n')
    return Setup(["sweep", spec], str(out), [out])


def _eval_unknown_second_set(folder: Path) -> Setup:
    """``eval --dataset Set5 Nope``: the unknown name is refused before Set5 is evaluated (no progress shown)."""
    from dataclasses import replace

    from intsim.artifact import load_artifact, save_artifact

    art = load_artifact(valid_artifact(folder, "random.intsim"))
    p = folder / "model.intsim"
    save_artifact(replace(art, model={**art.model, "scale": 2}), p)
    return Setup(["eval", p, "--dataset", "Set5", "Nope", "--limit", "1", "--crop", "8"], "Nope", [])


CASES: list[Case] = [
    # ------------------------------------------------------------ read-only or not writable
    Case("env-read-only-run-output", "Environment", "`run -o` a folder on a read-only file system",
         _run("{ro}/out", fault="read-only"), "read-only file system", policy=_UPFRONT),
    Case("env-permission-denied-counters", "Environment",
         "`run --counters` in a folder without write permission (the SR images could be written)",
         _run("{dir}/out", "{ro}/counters.json", fault="denied"), "permission denied", policy=_UPFRONT),
    Case("env-read-only-golden", "Environment", "`golden -o` on a read-only file system",
         _golden("{ro}/g", fault="read-only"), "read-only file system", policy=_UPFRONT, needs=("torch",)),
    Case("env-read-only-export-vectors", "Environment", "`export-vectors -o` on a read-only file system",
         _vectors("{ro}/vec", fault="read-only"), "read-only file system", policy=_UPFRONT),
    Case("env-read-only-cost", "Environment", "`cost -o` on a read-only file system",
         _cost("{ro}/cost.json", fault="read-only"), "read-only file system", policy=_UPFRONT),
    # ------------------------------------------------------------ disk full
    Case("env-disk-full-run", "Environment", "disk full while `run` writes into an existing output folder",
         _run("{dir}/out", fault="disk-full"), "no space left on device", policy=_ALL_OR_NOTHING),
    Case("env-disk-full-run-new-folder", "Environment", "disk full while `run` writes a new output folder",
         _run("{dir}/new_out", fault="disk-full"), "no space left on device",
         policy=_ALL_OR_NOTHING),
    Case("env-disk-full-export-vectors", "Environment", "disk full while `export-vectors` writes",
         _vectors("{dir}/vec", fault="disk-full"), "no space left on device", policy=_ALL_OR_NOTHING),
    Case("env-disk-full-golden", "Environment", "disk full while `golden` writes",
         _golden("{dir}/g", fault="disk-full"), "no space left on device",
         policy="the golden folder is written whole under a temp name and removed on failure", needs=("torch",)),
    Case("env-disk-full-cost", "Environment", "disk full while `cost -o` replaces an earlier result",
         _cost("{dir}/cost.json", fault="disk-full"), "no space left on device", policy=_ALL_OR_NOTHING),
    # ------------------------------------------------------------ path shape
    Case("env-output-under-a-file-run", "Environment", "`run -o` under a path component that is a file",
         _run("{file}/out"), "notes.txt is not a folder", policy=_UPFRONT),
    Case("env-counters-under-a-file", "Environment", "`run --counters` under a path component that is a file",
         _run("{dir}/out", "{file}/counters.json"), "notes.txt is not a folder", policy=_UPFRONT),
    Case("env-output-under-a-file-golden", "Environment", "`golden -o` under a path component that is a file",
         _golden("{file}/g"), "notes.txt is not a folder", policy=_UPFRONT, needs=("torch",)),
    Case("env-output-under-a-file-export-vectors", "Environment",
         "`export-vectors -o` under a path component that is a file", _vectors("{file}/vec"),
         "notes.txt is not a folder", policy=_UPFRONT),
    Case("env-output-under-a-file-cost", "Environment", "`cost -o` under a path component that is a file",
         _cost("{file}/cost.json"), "notes.txt is not a folder", policy=_UPFRONT),
    Case("env-counters-is-a-folder", "Environment", "`run --counters` names an existing folder",
         _run("{dir}/out", "{folder}"), "is a folder, not a file", policy=_UPFRONT),
    Case("env-cost-output-is-a-folder", "Environment", "`cost -o` names an existing folder",
         _cost("{folder}"), "is a folder, not a file", policy=_UPFRONT),
    Case("env-golden-output-is-a-file", "Environment", "`golden -o` names an existing file",
         _golden("{file}"), "exists and is not a folder", policy=_UPFRONT, needs=("torch",)),
    Case("env-golden-output-foreign-folder", "Environment",
         "`golden -o` names a folder holding other files (refused before any golden is computed)",
         _golden("{dir}/foreign"), "is not a golden directory; refusing to overwrite", policy=_UPFRONT,
         needs=("torch",)),
    Case("env-name-too-long-run", "Environment", "`run -o` with a 300-character folder name",
         _run("{dir}/{long}"), "bytes the file system allows", policy=_UPFRONT),
    Case("env-name-too-long-counters", "Environment", "`run --counters` with a 300-character file name",
         _run("{dir}/out", "{dir}/{long}.json"), "bytes the file system allows", policy=_UPFRONT),
    Case("env-state-dir-is-a-file", "Environment", "`calibrate --state-dir` names an existing file",
         _state_dir_is_a_file, "exists and is not a folder", policy=_UPFRONT, needs=("torch",)),
    Case("env-sweep-out-is-a-file", "Environment", "a sweep's `[sweep] out` names an existing file",
         _sweep_out_is_a_file, "exists and is not a folder", policy=_UPFRONT, needs=("torch",)),
    Case("env-eval-unknown-dataset-after-known", "Environment",
         "`eval --dataset Set5 Nope`: an unknown set after a known one",
         _eval_unknown_second_set, "unknown benchmark 'Nope'",
         policy="every dataset is resolved before the first image is evaluated", needs=("torch",)),
]
