"""Coverage-guided fuzzing of the four readers with atheris (optional; CI does not need it).

    python -m tests.fuzz.atheris_targets --target artifact -atheris_runs=10000

The first input byte picks what the rest replaces (whole file, or one member / file
of a valid seed), so libFuzzer's mutations reach past the container formats. A seed
corpus of valid inputs is written to a temp folder. Any exception other than the
target's clean error type, or a clean error whose message is not one line naming the
file, crashes the run (libFuzzer reports it and exits non-zero); ``-timeout`` catches hangs.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["intsim"]):
    from intsim.artifact import ArtifactError, load_artifact
    from intsim.cost import load_accelerator
    from intsim.cost._toml import ConfigError
    from intsim.golden_dir import GoldenError
    from intsim.images import ImageError, read_image

from tests.fuzz.common import read_golden_fully

WORK = Path(tempfile.mkdtemp(prefix="intsim-atheris-"))


def _contract(fn, err: type, names) -> None:
    try:
        fn()
    except err as e:
        msg = str(e)
        if "\n" in msg or not any(n in msg for n in ((names,) if isinstance(names, str) else names)):
            raise AssertionError(f"bad {type(e).__name__} message: {msg[:300]!r}") from None


# ---- artifact: 0 = whole file, else graph.json text zipped with the seed's arrays


def _artifact_seed():
    from tests.robustness.harness import _artifact_bytes

    data = _artifact_bytes(0)
    z = zipfile.ZipFile(io.BytesIO(data))
    members = [(n, z.read(n)) for n in z.namelist() if n != "graph.json"]
    return data, z.read("graph.json"), members


def artifact_corpus():
    data, graph, _ = _artifact_seed()
    return [b"\x00" + data, b"\x01" + graph]


def artifact_one(buf: bytes) -> None:
    if not buf:
        return
    if buf[0] % 2 == 0:
        data = buf[1:]
    else:
        _, _, members = _ARTIFACT
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("graph.json", buf[1:])
            for n, b in members:
                z.writestr(n, b)
        data = out.getvalue()
    p = WORK / "model.intsim"
    p.write_bytes(data)
    _contract(lambda: load_artifact(p), ArtifactError, str(p))


# ---- golden: 0 = manifest.json, k = the k-th .npy file


def _golden_seed():
    from tests.robustness.harness import _golden_template

    root = _golden_template()
    return root, sorted(str(p.relative_to(root)) for p in root.rglob("*.npy"))


def golden_corpus():
    root, files = _golden_seed()
    return [b"\x00" + (root / "manifest.json").read_bytes()] + [
        bytes([i + 1]) + (root / f).read_bytes() for i, f in enumerate(files[:8])]


def golden_one(buf: bytes) -> None:
    import shutil

    if not buf:
        return
    root, files = _GOLDEN
    g = WORK / "golden"
    if g.exists():
        shutil.rmtree(g)
    shutil.copytree(root, g)
    k = buf[0] % (len(files) + 1)
    (g / ("manifest.json" if k == 0 else files[k - 1])).write_bytes(buf[1:])

    _contract(lambda: read_golden_fully(g), GoldenError, str(g))


# ---- image: first byte picks channels


def image_corpus():
    from tests.fuzz.test_fuzz_image import seeds

    return [bytes([3 if i % 2 == 0 else 1]) + s for i, s in enumerate(seeds())]


def image_one(buf: bytes) -> None:
    if not buf:
        return
    p = WORK / "img.png"
    p.write_bytes(buf[1:])
    _contract(lambda: read_image(p, (3, 1, 0, 2, 4)[buf[0] % 5]), ImageError, str(p))


# ---- accel: 0 = accelerator file, 1 = the energy table beside it (seed accelerator)


def accel_corpus():
    from tests.fuzz.test_fuzz_accel import energy_bytes, seed_files

    return [b"\x00" + s for s in seed_files()] + [b"\x01" + energy_bytes()]


def accel_one(buf: bytes) -> None:
    from tests.fuzz.test_fuzz_accel import seed_files

    if not buf:
        return
    d = WORK / "accel"
    d.mkdir(exist_ok=True)
    p, e = d / "accel.toml", d / "energy_45nm.toml"
    e.unlink(missing_ok=True)
    if buf[0] % 2 == 0:
        p.write_bytes(buf[1:])
    else:
        p.write_bytes(seed_files()[0])
        e.write_bytes(buf[1:])

    def run():
        cfg = load_accelerator(p)
        cfg.to_json()
        cfg.energy_model()

    cost = str(Path(__file__).resolve().parents[2] / "intsim" / "cost")
    _contract(run, ConfigError, (str(d), cost))


TARGETS = {"artifact": (artifact_corpus, artifact_one), "golden": (golden_corpus, golden_one),
           "image": (image_corpus, image_one), "accel": (accel_corpus, accel_one)}
_ARTIFACT = _GOLDEN = None


def main() -> None:
    global _ARTIFACT, _GOLDEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=sorted(TARGETS), required=True)
    args, rest = ap.parse_known_args()
    corpus_fn, one = TARGETS[args.target]
    if args.target == "artifact":
        _ARTIFACT = _artifact_seed()
    if args.target == "golden":
        _GOLDEN = _golden_seed()
    corpus = WORK / "corpus"
    corpus.mkdir()
    for i, b in enumerate(corpus_fn()):
        (corpus / f"seed{i}").write_bytes(b)
    atheris.Setup([sys.argv[0], *rest, str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
