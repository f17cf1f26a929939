"""Per-layer test cases of `intsim export-vectors --artifact` (intsim/layer_cases.py, docs/rtl.md):
the exported vectors parse back into the artifact's integers exactly, the accumulators and multipliers
requantize to the golden output, packed codes unpack, and the C headers compile with gcc -Wall -Werror."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim.layer_cases import CONFIG_FIELDS
from intsim.layer_vectors import parse_hex
from intsim.ops.conv_paths import _plan
from intsim.overflow import apply_overflow
from intsim.rounding import round_shift
from intsim.vectors import export_vectors
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden


@pytest.fixture(scope="module", params=["split", "grid"])
def exported(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"cases_{request.param}")
    save_artifact(make_random_artifact(3, realization=request.param), d / "m.intsim")
    art = load_artifact(d / "m.intsim")
    rng = np.random.default_rng(5)
    engine_golden(art, d / "g", [("a.png", rng.integers(0, 256, (7, 6, 3), dtype=np.uint8))])
    idx = export_vectors(d / "g", d / "v", "readmemh", artifact=art, accumulators=True, pack_bits=32)
    return art, d, idx


def _read(d, entry, name):
    a = entry["arrays"][name]
    vals = parse_hex((d / "v" / a["file"]).read_text(), a["bits"])
    return vals.reshape(a["shape"])


def test_parameters_round_trip(exported):
    art, d, idx = exported
    from intsim.golden_dir import read_golden_dir

    g = read_golden_dir(d / "g")
    ops = {op.name: op for op in art.ops}
    kinds = [e["op_type"] for e in idx["layers"]]
    assert kinds.count("encode") == 8 and kinds.count("conv2d") == 7 and kinds.count("conv_transpose2d") == 1
    for e in idx["layers"]:
        op = ops[e["op"]]
        cfg = parse_hex((d / "v" / e["location"] / "config.hex").read_text(), 64)
        assert len(cfg) == len(CONFIG_FIELDS)
        c = dict(zip(CONFIG_FIELDS, (int(v) for v in cfg)))
        assert c == e["config"]
        np.testing.assert_array_equal(_read(d, e, "input"), g.tensor(0, op.inputs[0]))
        np.testing.assert_array_equal(_read(d, e, "expected"), g.tensor(0, op.outputs[0]))
        cb = art.tensors[op.outputs[0] if op.op == "encode" else op.inputs[0]].codebook
        assert c["n_seg"] == len(cb.segments) and c["num_codes"] == cb.num_codes
        for s, (seg, base) in enumerate(zip(cb.segments, cb.bases)):
            assert (c[f"seg{s}_origin"], c[f"seg{s}_step"], c[f"seg{s}_qmin"], c[f"seg{s}_qmax"],
                    c[f"seg{s}_base"]) == (seg.origin, seg.step, seg.qmin, seg.qmax, base)
        for s, st in enumerate(cb.encoder):
            assert (c[f"enc{s}_center"], c[f"enc{s}_mult"], c[f"enc{s}_shift"]) == (st.center, st.mult, st.shift)
        assert [c[f"thr{s}"] for s in range(len(cb.thresholds))] == list(cb.thresholds)
        seg_of, q_of, g_of = cb.code_table()
        for name, want in (("lut_seg", seg_of), ("lut_q", q_of), ("lut_grid", g_of)):
            np.testing.assert_array_equal(_read(d, e, name), want)
        if op.op == "encode":
            continue
        for role in ("weight", "w_mant", "bias"):
            got = _read(d, e, role)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, art.array(op, role))
        _, _, _, _, mult = _plan(cb, art.numerics.realization, art.array(op, "w_mant"))
        np.testing.assert_array_equal(_read(d, e, "mult"), mult)  # the engine's own multipliers
        assert c["shift"] == op.attrs["w_exp"] + cb.unit_e - art.tensors[op.outputs[0]].frac


def test_accumulators_requantize_to_the_output(exported):
    """(5.3) from the exported integers alone: X = OVF(R(Σ M_j·acc_j + B, n)) equals the golden output."""
    art, d, idx = exported
    for e in idx["layers"]:
        if e["op_type"] == "encode":
            continue
        assert "acc" in e["arrays"], e["op"]  # none of these ops can overflow
        acc, mult, bias = _read(d, e, "acc"), _read(d, e, "mult"), _read(d, e, "bias")
        i = (acc * mult[:, None, None, :]).sum(axis=0) + bias
        x, _ = apply_overflow(round_shift(i, e["config"]["shift"], art.numerics.rounding),
                              art.numerics.stream_bits, "saturate", e["op"])
        np.testing.assert_array_equal(x, _read(d, e, "expected"))


def test_packed_codes_unpack(exported):
    art, d, idx = exported
    for e in idx["layers"]:
        p = e["packed"]
        name = "expected" if e["op_type"] == "encode" else "input"
        codes = _read(d, e, name).reshape(-1)
        words = parse_hex((d / "v" / p["files"][0]).read_text(), p["bits"], signed=False)
        per, cb = p["per_word"], p["code_bits"]
        assert len(words) == -(-codes.size // per)
        got = [(int(w) >> (j * cb)) & ((1 << cb) - 1) for w in words for j in range(per)][:codes.size]
        assert got == codes.tolist()


def test_index_is_json_and_lists_every_file(exported):
    art, d, idx = exported
    on_disk = json.loads((d / "v" / "index.json").read_text())
    assert on_disk["layers"] == json.loads(json.dumps(idx["layers"]))
    for e in idx["layers"]:
        for a in e["arrays"].values():
            assert (d / "v" / a["file"]).is_file()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_headers_compile_and_hold_the_values(exported, tmp_path):
    art, d, _ = exported
    idx = export_vectors(d / "g", tmp_path / "c", "c", artifact=art, accumulators=True)
    conv = next(e for e in idx["layers"] if e["op_type"] == "conv2d")
    src = ["#include <stdio.h>", "#include <inttypes.h>"]
    src += [f'#include "{e["location"]}"' for e in idx["layers"]]
    ident = conv["arrays"]["weight"]["c_name"].rsplit("_weight", 1)[0]
    src += ["int main(void) {", "  int64_t s = 0;",
            f"  for (int i = 0; i < {ident.upper()}_WEIGHT_LEN; i++) s += (int64_t){ident}_weight[i] * (i + 1);",
            f'  printf("%" PRId64 " %" PRId64 " %" PRId64 "\\n", s, (int64_t){ident.upper()}_SHIFT, '
            f"(int64_t){ident}_bias[0]);", "  return 0;", "}"]
    (tmp_path / "c" / "main.c").write_text("\n".join(src) + "\n")
    exe = tmp_path / "main"
    r = subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-o", str(exe), "main.c"], cwd=tmp_path / "c",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    op = next(o for o in art.ops if o.name == conv["op"])
    w = art.array(op, "weight").astype(np.int64).reshape(-1)
    assert int(out[0]) == int((w * np.arange(1, w.size + 1)).sum())
    assert int(out[1]) == conv["config"]["shift"] and int(out[2]) == int(art.array(op, "bias")[0])


def test_layer_cases_need_the_artifact(exported, tmp_path):
    art, d, _ = exported
    with pytest.raises(ValueError, match="--artifact"):
        export_vectors(d / "g", tmp_path / "x", "readmemh", layers=["head.conv"])
    with pytest.raises(ValueError, match="not a conv or encode layer"):
        export_vectors(d / "g", tmp_path / "x", "readmemh", artifact=art, layers=["body.relu"])
    other = make_random_artifact(4)
    save_artifact(other, tmp_path / "o.intsim")
    with pytest.raises(ValueError, match="another artifact"):
        export_vectors(d / "g", tmp_path / "x", "readmemh", artifact=load_artifact(tmp_path / "o.intsim"))
    assert not (tmp_path / "x").exists()


def test_cli_layer_cases(exported, tmp_path, capsys):
    from intsim_cli.main import main

    art, d, _ = exported
    code = main(["export-vectors", str(d / "g"), "-o", str(tmp_path / "v"), "--artifact", str(d / "m.intsim"),
                 "--layer", "head.conv", "--layer", "head.enc", "--pack-bits", "16", "--json"])
    assert code == 0
    js = json.loads(capsys.readouterr().out)
    assert js["layers"] == 2
    idx = json.loads((tmp_path / "v" / "index.json").read_text())
    assert [e["op"] for e in idx["layers"]] == ["head.enc", "head.conv"]
    code = main(["export-vectors", str(d / "g"), "-o", str(tmp_path / "w"), "--layer", "head.conv"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--artifact" in err[0]
    code = main(["export-vectors", str(d / "g"), "-o", str(tmp_path / "w"), "--artifact", str(d / "m.intsim"),
                 "--pack-bits", "10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "multiple of 4" in err[0]
    assert not (tmp_path / "w").exists()


def test_packed_needs_readmemh(exported, tmp_path):
    art, d, _ = exported
    with pytest.raises(ValueError, match="--format readmemh"):
        export_vectors(d / "g", tmp_path / "x", "c", artifact=art, pack_bits=32)
