"""Energy per operation: a versioned reference table and how intsim scales it.

The table (``energy_45nm.toml``, Horowitz ISSCC 2014, 45 nm / 0.9 V) gives measured
points; this module states — and every cost report repeats (``EnergyModel.describe``) —
how other widths, buffer sizes and process nodes are derived from them:

* **Integer adder** of ``b`` bits: affine in the width through the two measured points,
  ``E_add(b) = α + β·b`` with ``E_add(8) = 0.03 pJ``, ``E_add(32) = 0.1 pJ``
  (β ≈ 2.9 fJ/bit, α ≈ 6.7 fJ): a ripple/prefix adder's energy grows linearly with its
  width, plus a small fixed part. Used for accumulations, comparisons, rounding adds.
* **Integer multiplier** of ``a × b`` bits: a power law in the product of the operand
  widths through the two measured points, ``E_mult(a, b) = E_mult(8,8) · (a·b / 64)^γ``
  with ``γ = ln(3.1/0.2) / ln(1024/64) ≈ 0.988`` — i.e. essentially proportional to
  ``a·b``, the number of partial-product bits of an array multiplier. Exact at 8×8 and
  32×32, interpolated between them and extrapolated outside (4×4 ≈ 0.05 pJ).
* **fp32** add and multiply: the table's values (no width scaling).
* **SRAM**: energy per bit read or written from a buffer of ``C`` KB is
  ``E_sram32 / 32 · (C / 8 KB)^0.5`` (exponent from the table, fitted to the source's
  8 KB / 32 KB / 1 MB points). Small look-up tables (grid decode, lut activations) use the same
  law at their own size.
* **DRAM**: ``E_dram32 / 32`` per bit, independent of the logic process.
* **Process / voltage**: logic and SRAM energies are multiplied by
  ``(process_nm / 45) · (V / 0.9 V)² · scale`` — first-order CV² scaling (switched
  capacitance ∝ feature size). A crude knob for what-if studies, not a PDK; DRAM is
  multiplied by ``dram_scale`` only.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from intsim.cost._toml import ConfigError, Section, check_sections, read_toml

DEFAULT_TABLE = "energy_45nm.toml"


@dataclass(frozen=True)
class EnergyTable:
    """The measured points of one energy table (pJ)."""

    name: str
    version: int
    process_nm: float
    voltage_v: float
    source: str
    notes: str
    add_8b: float
    add_32b: float
    mult_8b: float
    mult_32b: float
    add_fp32: float
    mult_fp32: float
    sram_read_32b: float
    sram_reference_kb: float
    sram_capacity_exponent: float
    dram_access_32b: float
    path: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


def packaged_table_path(name: str = DEFAULT_TABLE) -> Path:
    """Path of a table shipped in the ``intsim.cost`` package."""
    return Path(str(resources.files("intsim.cost").joinpath(name)))


def load_energy_table(path: str | os.PathLike | None = None) -> EnergyTable:
    """Read an energy table strictly (:class:`ConfigError` naming file/section/key)."""
    path = Path(path) if path is not None else packaged_table_path()
    where = str(path)
    doc = read_toml(path)
    check_sections(doc, ("meta", "integer", "float", "sram", "dram"), where)
    meta = Section(doc, "meta", where)
    name = meta.string("name")
    version = meta.integer("version", lo=1)
    process_nm = meta.number("process_nm", positive=True)
    voltage_v = meta.number("voltage_v", positive=True)
    units = meta.string("units", choices=("pJ",))
    source = meta.string("source")
    notes = meta.string("notes", required=False, default="")
    meta.done()
    del units
    i = Section(doc, "integer", where)
    vals = {k: i.number(k, positive=True) for k in ("add_8b_pj", "add_32b_pj", "mult_8b_pj", "mult_32b_pj")}
    i.done()
    if not vals["add_32b_pj"] > vals["add_8b_pj"]:
        raise ConfigError(f"{where}: [integer] add_32b_pj: must exceed add_8b_pj (a wider adder costs more)")
    if not vals["mult_32b_pj"] > vals["mult_8b_pj"]:
        raise ConfigError(f"{where}: [integer] mult_32b_pj: must exceed mult_8b_pj (a wider multiplier costs more)")
    f = Section(doc, "float", where)
    add_fp32 = f.number("add_fp32_pj", positive=True)
    mult_fp32 = f.number("mult_fp32_pj", positive=True)
    f.done()
    s = Section(doc, "sram", where)
    sram = s.number("read_32b_pj", positive=True)
    ref_kb = s.number("reference_kb", positive=True)
    expo = s.number("capacity_exponent", nonnegative=True, hi=2.0)
    s.done()
    d = Section(doc, "dram", where)
    dram = d.number("access_32b_pj", positive=True)
    d.done()
    return EnergyTable(
        name=name, version=version, process_nm=process_nm, voltage_v=voltage_v, source=source, notes=notes,
        add_8b=vals["add_8b_pj"], add_32b=vals["add_32b_pj"], mult_8b=vals["mult_8b_pj"],
        mult_32b=vals["mult_32b_pj"], add_fp32=add_fp32, mult_fp32=mult_fp32, sram_read_32b=sram,
        sram_reference_kb=ref_kb, sram_capacity_exponent=expo, dram_access_32b=dram, path=where,
    )


def process_scale(table: EnergyTable, process_nm: float | None = None, voltage_v: float | None = None,
                  scale: float = 1.0) -> float:
    """Logic/SRAM energy factor ``(node / node_ref) · (V / V_ref)² · scale`` (first-order CV²)."""
    node = table.process_nm if process_nm is None else process_nm
    volt = table.voltage_v if voltage_v is None else voltage_v
    if not (node > 0 and volt > 0 and scale > 0):
        raise ValueError(f"process scaling needs positive node, voltage and scale, got {node}, {volt}, {scale}")
    return (node / table.process_nm) * (volt / table.voltage_v) ** 2 * scale


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation (pJ) derived from an :class:`EnergyTable` (see module docstring)."""

    table: EnergyTable
    logic_scale: float = 1.0
    dram_scale: float = 1.0

    # ---- integer arithmetic
    @property
    def add_slope(self) -> float:
        return (self.table.add_32b - self.table.add_8b) / 24.0

    @property
    def add_intercept(self) -> float:
        return self.table.add_8b - 8.0 * self.add_slope

    @property
    def mult_exponent(self) -> float:
        return math.log(self.table.mult_32b / self.table.mult_8b) / math.log(1024.0 / 64.0)

    def add(self, bits: float) -> float:
        """Integer add/compare of ``bits`` bits."""
        if bits < 1:
            raise ValueError(f"adder width must be ≥ 1 bit, got {bits}")
        return max(self.add_intercept + self.add_slope * bits, 0.0) * self.logic_scale

    def mult(self, a_bits: float, b_bits: float) -> float:
        """Integer ``a_bits × b_bits`` multiply."""
        if a_bits < 1 or b_bits < 1:
            raise ValueError(f"multiplier operand widths must be ≥ 1 bit, got {a_bits}×{b_bits}")
        return self.table.mult_8b * (a_bits * b_bits / 64.0) ** self.mult_exponent * self.logic_scale

    # ---- floating point
    def fp_add(self) -> float:
        return self.table.add_fp32 * self.logic_scale

    def fp_mult(self) -> float:
        return self.table.mult_fp32 * self.logic_scale

    # ---- memories
    def sram_bit(self, capacity_kb: float) -> float:
        """Energy per bit read or written from a ``capacity_kb`` KB SRAM."""
        if capacity_kb <= 0:
            raise ValueError(f"SRAM capacity must be > 0 KB, got {capacity_kb}")
        t = self.table
        return t.sram_read_32b / 32.0 * (capacity_kb / t.sram_reference_kb) ** t.sram_capacity_exponent * self.logic_scale

    def lut_read(self, entries: int, bits: int) -> float:
        """One ``bits``-bit read from a look-up table of ``entries`` entries (SRAM law at its size)."""
        kb = max(entries * bits / 8.0 / 1024.0, 1e-6)
        return bits * self.sram_bit(kb)

    def dram_bit(self) -> float:
        return self.table.dram_access_32b / 32.0 * self.dram_scale

    def describe(self) -> dict:
        """The model as data, for reports (JSON-serialisable)."""
        t = self.table
        return {
            "table": t.name,
            "table_version": t.version,
            "table_path": t.path,
            "source": t.source,
            "reference_process_nm": t.process_nm,
            "reference_voltage_v": t.voltage_v,
            "logic_scale": self.logic_scale,
            "dram_scale": self.dram_scale,
            "int_add": f"E_add(b) = {self.add_intercept:.5f} + {self.add_slope:.6f}·b pJ (affine through "
                       f"8 b: {t.add_8b} pJ and 32 b: {t.add_32b} pJ), × logic_scale",
            "int_mult": f"E_mult(a,b) = {t.mult_8b}·(a·b/64)^{self.mult_exponent:.4f} pJ (power law in the product "
                        f"of operand widths through 8×8: {t.mult_8b} pJ and 32×32: {t.mult_32b} pJ), × logic_scale",
            "fp32": f"add {t.add_fp32} pJ, mult {t.mult_fp32} pJ, × logic_scale",
            "sram": f"per bit {t.sram_read_32b}/32·(C/{t.sram_reference_kb:g} KB)^{t.sram_capacity_exponent:g} pJ, "
                    f"× logic_scale (reads and writes alike)",
            "dram": f"per bit {t.dram_access_32b}/32 pJ, × dram_scale",
            "process": "logic_scale = (process_nm/ref_nm)·(V/ref_V)²·scale (first-order CV²)",
        }
