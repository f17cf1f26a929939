"""Robustness cases: vectors (see harness.py)."""
from __future__ import annotations

from pathlib import Path

from tests.robustness.harness import Case, Setup, valid_golden


def _hostile(fmt: str, sources=None, tensors=None, ops=None):
    """``intsim export-vectors`` of a valid golden whose manifest names were edited (arrays untouched);
    tests/intsim/test_vectors.py compiles and parses what it writes."""

    def build(folder: Path) -> Setup:
        from tests.intsim.test_vectors import hostile_names

        g = hostile_names(valid_golden(folder), sources, tensors, ops)
        return Setup(["export-vectors", g, "--format", fmt, "-o", folder / "vectors"], str(g / "manifest.json"))

    return build


_ESCAPED = "written escaped as JSON strings in comments"
_COMMENTS = ("accepted: names that are not plain printable ASCII (or hold `\\` `\"` `*` `?`) are written into "
             "comments as one-line JSON strings with `*/` and `/*` split, so `gcc -E` and `$readmemh` see only "
             "comments; index.json keeps the exact names; with a notice")

CASES: list[Case] = [
    Case("vectors-source-include", "Test vectors", 'input source holding a newline and `#include "/etc/passwd"`',
         _hostile("c", sources={0: 'x.png\n#include "/etc/passwd"\nint injected = 1;'}), _ESCAPED,
         kind="accepted", policy=_COMMENTS),
    Case("vectors-tensor-closes-comment", "Test vectors", "tensor name holding `*/ int injected = 1; /*`",
         _hostile("c", tensors={(0, 0): "a */ int injected = 1; /* b"}), _ESCAPED, kind="accepted",
         policy=_COMMENTS + "; C identifiers keep only `[A-Za-z0-9_]`"),
    Case("vectors-source-star-slash", "Test vectors",
         "an innocent input path `cam*/b.png` (`*/` would end the C comment)",
         _hostile("c", sources={0: "cam*/b.png"}), _ESCAPED, kind="accepted", policy=_COMMENTS),
    Case("vectors-op-newline-hex", "Test vectors", "op name holding a newline and a hex word (`$readmemh` data)",
         _hostile("readmemh", ops={(0, 1): "op\n0badf00d\n@10"}), _ESCAPED, kind="accepted", policy=_COMMENTS),
    Case("vectors-op-trailing-backslash", "Test vectors",
         "op name ending in a backslash (line splice in a `//` comment) or `??/`",
         _hostile("readmemh", ops={(0, 1): "op\\", (0, 2): "op ??/"}), _ESCAPED, kind="accepted",
         policy=_COMMENTS + " (a JSON string never ends in a backslash; `??` is split: no trigraph)"),
    Case("vectors-ident-collision", "Test vectors", "tensor names that map to one C identifier (`a-b`, `a_b`, `A_B`)",
         _hostile("c", tensors={(0, 0): "a-b", (0, 1): "a_b", (0, 2): "A_B"}), "given a suffix _<n> to stay unique",
         kind="accepted", policy="accepted: identifiers made unique (also in upper case: macros and include "
                                 "guards) with a suffix, the same whatever `--tensor`/`--input` select; index.json "
                                 "gives each file's `c_identifier`; with a notice"),
    Case("vectors-name-too-long", "Test vectors", "a 300-character tensor name (file name too long)",
         _hostile("readmemh", tensors={(0, 0): "y" * 300}), "wrote 82 readmemh file(s)", kind="accepted",
         policy="accepted: file names keep the first 100 characters of the tensor name (the position prefix "
                "keeps them distinct); index.json has the exact name"),
]
