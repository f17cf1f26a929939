"""Accelerator description files (TOML) and :class:`AcceleratorConfig`.

A description names a systolic PE array and its memories; the cost model
(:mod:`intsim.cost.model`) maps each conv onto it. Format (every key is checked;
unknown sections or keys, wrong types, impossible values are refused with a
:class:`~intsim.cost._toml.ConfigError` — a ``ValueError`` — naming file, section, key)::

    [accelerator]
    name = "edge-npu"               # required
    description = "..."             # optional
    clock_mhz = 800.0               # > 0
    realization = "split"           # split | grid | artifact (= the artifact's own)

    [array]
    rows = 32                       # PE rows  (1..65536)
    cols = 32                       # PE cols  (1..65536)
    dataflow = "os"                 # os | ws | is  (output / weight / input stationary)
    vector_lanes = 32               # optional, elements/cycle of the vector unit (default cols)

    [buffers]                       # on-chip SRAM, KB (> 0)
    ifmap_kb = 256
    filter_kb = 128
    ofmap_kb = 128
    double_buffered = true          # optional (default true): half of each buffer is usable

    [dram]                          # exactly one of:
    bytes_per_cycle = 16.0          # bytes per accelerator clock cycle
    # gb_per_s = 12.8               # 10^9 bytes per second

    [datapath]
    weight_bits = 8                 # native multiplier operand widths, 1..32
    activation_bits = 8
    accumulator_bits = 32           # ≥ weight_bits + activation_bits, ≤ 64
    mac_energy_width = "used"       # optional: used (energy at the operand widths the layer
                                    # needs) | native (every product costs the native multiplier)

    [energy]                        # optional section
    table = "energy_45nm.toml"      # relative to this file, else a table shipped with intsim
    process_nm = 28.0               # optional, default the table's node
    voltage_v = 0.9                 # optional, default the table's voltage
    scale = 1.0                     # optional extra factor on logic and SRAM energy
    dram_scale = 1.0                # optional factor on DRAM energy

Packaged examples: ``load_accelerator("edge_npu")``, ``"mcu_tiny"``, ``"server_tpu"``
(:func:`packaged_accelerators` lists them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from intsim.cost._toml import ConfigError, Section, check_sections, read_toml
from intsim.cost.energy import (
    DEFAULT_TABLE,
    EnergyModel,
    EnergyTable,
    load_energy_table,
    packaged_table_path,
    process_scale,
)

DATAFLOWS = ("os", "ws", "is")
REALIZATIONS = ("split", "grid", "artifact")
MAC_ENERGY_WIDTHS = ("used", "native")


@dataclass(frozen=True)
class AcceleratorConfig:
    """One accelerator: PE array, buffers, DRAM, datapath widths, energy table."""

    name: str
    clock_mhz: float
    realization: str
    rows: int
    cols: int
    dataflow: str
    ifmap_kb: float
    filter_kb: float
    ofmap_kb: float
    dram_bytes_per_cycle: float
    weight_bits: int = 8
    activation_bits: int = 8
    accumulator_bits: int = 32
    mac_energy_width: str = "used"
    vector_lanes: int = 0  # 0: = cols
    double_buffered: bool = True
    description: str = ""
    energy_table: EnergyTable = field(default_factory=lambda: load_energy_table(None))
    process_nm: float | None = None
    voltage_v: float | None = None
    energy_scale: float = 1.0
    dram_scale: float = 1.0
    source: str = "<in memory>"

    def __post_init__(self):
        where = self.source
        if self.dataflow not in DATAFLOWS:
            raise ConfigError(f"{where}: [array] dataflow: must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}")
        if self.realization not in REALIZATIONS:
            raise ConfigError(f"{where}: [accelerator] realization: must be one of {', '.join(REALIZATIONS)}, "
                              f"got {self.realization!r}")
        if self.mac_energy_width not in MAC_ENERGY_WIDTHS:
            raise ConfigError(f"{where}: [datapath] mac_energy_width: must be one of "
                              f"{', '.join(MAC_ENERGY_WIDTHS)}, got {self.mac_energy_width!r}")
        for sec, key, v in (("array", "rows", self.rows), ("array", "cols", self.cols)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65536:
                raise ConfigError(f"{where}: [{sec}] {key}: must be an integer in 1..65536, got {v!r}")
        for sec, key, v in (("accelerator", "clock_mhz", self.clock_mhz), ("buffers", "ifmap_kb", self.ifmap_kb),
                            ("buffers", "filter_kb", self.filter_kb), ("buffers", "ofmap_kb", self.ofmap_kb),
                            ("dram", "bytes_per_cycle", self.dram_bytes_per_cycle),
                            ("energy", "scale", self.energy_scale), ("energy", "dram_scale", self.dram_scale)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and v < float("inf")):
                raise ConfigError(f"{where}: [{sec}] {key}: must be a finite number > 0, got {v!r}")
        for key, v in (("weight_bits", self.weight_bits), ("activation_bits", self.activation_bits)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 32:
                raise ConfigError(f"{where}: [datapath] {key}: must be an integer in 1..32, got {v!r}")
        a = self.accumulator_bits
        if isinstance(a, bool) or not isinstance(a, int) or not 2 <= a <= 64:
            raise ConfigError(f"{where}: [datapath] accumulator_bits: must be an integer in 2..64, got {a!r}")
        if a < self.weight_bits + self.activation_bits:
            raise ConfigError(
                f"{where}: [datapath] accumulator_bits: {a} bits cannot hold one "
                f"{self.weight_bits}×{self.activation_bits}-bit product ({self.weight_bits + self.activation_bits} bits)"
            )
        if isinstance(self.vector_lanes, bool) or not isinstance(self.vector_lanes, int) or self.vector_lanes < 0:
            raise ConfigError(f"{where}: [array] vector_lanes: must be an integer ≥ 1, got {self.vector_lanes!r}")
        for key, v in (("process_nm", self.process_nm), ("voltage_v", self.voltage_v)):
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")):
                raise ConfigError(f"{where}: [energy] {key}: must be a finite number > 0, got {v!r}")
        try:  # (node/node_ref)·(V/V_ref)²·scale: huge or tiny inputs overflow (found by fuzzing)
            ls = self.logic_scale
        except (OverflowError, ValueError):
            ls = float("inf")
        if not 0 < ls < float("inf"):
            raise ConfigError(f"{where}: [energy] process_nm, voltage_v, scale: the logic energy factor "
                              f"(node/node_ref)·(V/V_ref)²·scale = {ls:g} is not a finite number > 0")

    # ---- derived
    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def lanes(self) -> int:
        return self.vector_lanes or self.cols

    @property
    def usable_fraction(self) -> float:
        return 0.5 if self.double_buffered else 1.0

    @property
    def dram_gb_per_s(self) -> float:
        return self.dram_bytes_per_cycle * self.clock_mhz * 1e6 / 1e9

    @property
    def logic_scale(self) -> float:
        return process_scale(self.energy_table, self.process_nm, self.voltage_v, self.energy_scale)

    def energy_model(self) -> EnergyModel:
        return EnergyModel(self.energy_table, logic_scale=self.logic_scale, dram_scale=self.dram_scale)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "clock_mhz": self.clock_mhz,
            "realization": self.realization,
            "array": {"rows": self.rows, "cols": self.cols, "dataflow": self.dataflow, "vector_lanes": self.lanes},
            "buffers_kb": {"ifmap": self.ifmap_kb, "filter": self.filter_kb, "ofmap": self.ofmap_kb,
                           "double_buffered": self.double_buffered},
            "dram": {"bytes_per_cycle": self.dram_bytes_per_cycle, "gb_per_s": self.dram_gb_per_s},
            "datapath": {"weight_bits": self.weight_bits, "activation_bits": self.activation_bits,
                         "accumulator_bits": self.accumulator_bits, "mac_energy_width": self.mac_energy_width},
            "energy": {"table": self.energy_table.name, "table_path": self.energy_table.path,
                       "process_nm": self.process_nm if self.process_nm is not None else self.energy_table.process_nm,
                       "voltage_v": self.voltage_v if self.voltage_v is not None else self.energy_table.voltage_v,
                       "scale": self.energy_scale, "dram_scale": self.dram_scale,
                       "logic_scale": self.logic_scale},
        }


# --------------------------------------------------------------------------
# files


def _packaged_dir() -> Path:
    return Path(str(resources.files("intsim.cost").joinpath("accelerators")))


def packaged_accelerators() -> dict[str, Path]:
    """Names and paths of the accelerator descriptions shipped with intsim."""
    d = _packaged_dir()
    return {p.stem: p for p in sorted(d.glob("*.toml"))} if d.is_dir() else {}


def _resolve_table(ref: str, base: Path, where: str) -> Path:
    p = Path(ref)
    try:
        if p.is_absolute():
            if p.is_file():
                return p
        else:
            if (base / p).is_file():
                return base / p
            pkg = packaged_table_path(ref)
            if pkg.is_file():
                return pkg
    except OSError:  # e.g. ENAMETOOLONG for a 300-character name (found by fuzzing)
        pass
    raise ConfigError(f"{where}: [energy] table: energy table {ref!r} not found (looked beside the file and in intsim/cost/)")


def accelerator_from_dict(doc: dict, where: str = "<dict>", base_dir: str | os.PathLike | None = None) -> AcceleratorConfig:
    """Build an :class:`AcceleratorConfig` from a parsed TOML document, strictly."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: an accelerator description must be a TOML table")
    check_sections(doc, ("accelerator", "array", "buffers", "dram", "datapath", "energy"), where)
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    s = Section(doc, "accelerator", where)
    name = s.string("name")
    description = s.string("description", required=False, default="")
    clock = s.number("clock_mhz", positive=True)
    realization = s.string("realization", choices=REALIZATIONS)
    s.done()

    s = Section(doc, "array", where)
    rows = s.integer("rows", lo=1, hi=65536)
    cols = s.integer("cols", lo=1, hi=65536)
    dataflow = s.string("dataflow", choices=DATAFLOWS)
    lanes = s.integer("vector_lanes", required=False, default=0, lo=1, hi=1 << 20)
    s.done()

    s = Section(doc, "buffers", where)
    ikb = s.number("ifmap_kb", positive=True)
    fkb = s.number("filter_kb", positive=True)
    okb = s.number("ofmap_kb", positive=True)
    dbuf = s.boolean("double_buffered", required=False, default=True)
    s.done()

    s = Section(doc, "dram", where)
    has_bpc, has_gbs = s.has("bytes_per_cycle"), s.has("gb_per_s")
    if has_bpc == has_gbs:
        raise ConfigError(f"{where}: [dram] give exactly one of 'bytes_per_cycle' or 'gb_per_s'"
                          + (" (both given)" if has_bpc else " (neither given)"))
    bpc = s.number("bytes_per_cycle", required=False, positive=True)
    gbs = s.number("gb_per_s", required=False, positive=True)
    s.done()
    if bpc is None:
        bpc = gbs * 1e9 / (clock * 1e6)
        if not 0 < bpc < float("inf"):  # e.g. gb_per_s = 1e300 with a tiny clock
            raise ConfigError(f"{where}: [dram] gb_per_s = {gbs} at clock_mhz = {clock} gives {bpc} bytes per "
                              "cycle; give a finite, positive bandwidth")

    s = Section(doc, "datapath", where)
    wb = s.integer("weight_bits", lo=1, hi=32)
    ab = s.integer("activation_bits", lo=1, hi=32)
    acc = s.integer("accumulator_bits", lo=2, hi=64)
    mew = s.string("mac_energy_width", required=False, default="used", choices=MAC_ENERGY_WIDTHS)
    s.done()
    if acc < wb + ab:
        raise ConfigError(f"{where}: [datapath] accumulator_bits: {acc} bits cannot hold one {wb}×{ab}-bit "
                          f"product ({wb + ab} bits)")

    s = Section(doc, "energy", where, required=False)
    table_ref = s.string("table", required=False, default=DEFAULT_TABLE)
    process_nm = s.number("process_nm", required=False, positive=True)
    voltage_v = s.number("voltage_v", required=False, positive=True)
    escale = s.number("scale", required=False, default=1.0, positive=True)
    dscale = s.number("dram_scale", required=False, default=1.0, positive=True)
    s.done()
    table = load_energy_table(_resolve_table(table_ref, base, where))

    return AcceleratorConfig(
        name=name, clock_mhz=clock, realization=realization, rows=rows, cols=cols, dataflow=dataflow,
        ifmap_kb=ikb, filter_kb=fkb, ofmap_kb=okb, dram_bytes_per_cycle=bpc, weight_bits=wb,
        activation_bits=ab, accumulator_bits=acc, mac_energy_width=mew, vector_lanes=lanes,
        double_buffered=dbuf, description=description, energy_table=table, process_nm=process_nm,
        voltage_v=voltage_v, energy_scale=escale, dram_scale=dscale, source=where,
    )


def load_accelerator(path_or_name: str | os.PathLike) -> AcceleratorConfig:
    """Read an accelerator description: a ``.toml`` path, or the name of a packaged one."""
    p = Path(path_or_name)
    if not p.is_file():
        shipped = packaged_accelerators()
        if str(path_or_name) in shipped:
            p = shipped[str(path_or_name)]
        elif p.suffix != ".toml" and not p.exists():
            raise ConfigError(f"{path_or_name}: no such accelerator file, and not a packaged accelerator "
                              f"(packaged: {', '.join(shipped) or 'none'})")
    doc = read_toml(p)
    return accelerator_from_dict(doc, where=str(p), base_dir=p.parent)
