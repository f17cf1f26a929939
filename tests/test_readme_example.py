"""The README's "Python API" example (issue 20) runs as written, on the real IMDN ×3 checkpoint and a Set5
image, and ends with the bit-exact verdict. Skips, saying which file is missing, without the data root."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from calib.data_root import available, data_root

README = Path(__file__).resolve().parents[1] / "README.md"
#: what the example reads under the data root
NEEDS = ("weights/imdn/IMDN_x3.pth", "data/SunHays80", "data/Set5/LR_bicubic/X3/butterflyx3.png")


def python_api_example() -> str:
    """The code block after ``<!-- python-api-example -->`` (exactly one in the README)."""
    blocks = re.findall(r"<!-- python-api-example -->\s*```python\n(.*?)```", README.read_text(encoding="utf-8"),
                        re.S)
    assert len(blocks) == 1, f"README holds {len(blocks)} python-api-example blocks, expected one"
    return blocks[0]


def test_the_example_uses_the_public_api():
    code = python_api_example()
    for call in ("calib.quantize(", "intsim.load_artifact(", "intsim.run(", "intsim.verify(", "write_golden("):
        assert call in code, call


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    missing = [rel for rel in NEEDS if not available(rel)]
    if missing:
        pytest.skip(f"{missing[0]} not present under the data root {data_root()} (set INTSIM_DATA_ROOT)")
    torch = pytest.importorskip("torch")
    import intsim

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-core CI machines
    try:
        exec(compile(python_api_example(), "README.md:python-api-example", "exec"), {"__name__": "readme_example"})
    finally:
        torch.set_num_threads(threads)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(re.escape(f"{intsim.__version__} W8A8 (255, 255, 3) uint8 OK: 1 input(s), ")
                        + r"\d+ tensors and \d+ event counters identical", last), last
    art = intsim.load_artifact(tmp_path / "imdn_x3.intsim")
    assert art.model["scale"] == 3 and art.metadata["source"]["model"] == "imdn"
    assert (tmp_path / "golden_imdn" / "manifest.json").is_file()
