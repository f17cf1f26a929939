"""``python -m intsim.cost``: cost an artifact on an accelerator from engine counters.

    python -m intsim.cost ARTIFACT --counters counters.json --accel edge_npu [--scheme artifact]
                          [--compare] [-o cost.json]

``--counters`` is the file ``intsim run ... --counters FILE`` writes. ``--accel`` is a
TOML path or a packaged accelerator name (``--list`` shows them). ``--compare`` prints
the comparison table of the artifact against fp32, W8A8 and W4A4 on the same images.
Exit codes as the ``intsim`` CLI: 0 ok, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from intsim.artifact import atomic_write_json, load_artifact
    from intsim.cost import (
        compare_schemes,
        estimate_cost,
        load_accelerator,
        packaged_accelerators,
    )
    from intsim.cost.model import load_counters

    p = argparse.ArgumentParser(prog="python -m intsim.cost", description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", nargs="?")
    p.add_argument("--counters", help="JSON written by `intsim run --counters`")
    p.add_argument("--accel", default="edge_npu", help="accelerator TOML or packaged name (default edge_npu)")
    p.add_argument("--scheme", default="artifact", help="artifact | fp32 | W<b>A<b> (default artifact)")
    p.add_argument("--uniform-policy", default="follow", choices=("follow", "all"))
    p.add_argument("--compare", action="store_true", help="print artifact vs fp32/W8A8/W4A4 rows")
    p.add_argument("-o", "--out", help="write the full cost result as JSON")
    p.add_argument("--list", action="store_true", help="list packaged accelerators and exit")
    a = p.parse_args(argv)
    try:
        if a.list:
            for name, path in packaged_accelerators().items():
                acc = load_accelerator(path)
                print(f"{name:12s} {acc.description}")
            return 0
        if not a.artifact or not a.counters:
            raise ValueError("give ARTIFACT and --counters FILE (or --list)")
        art = load_artifact(a.artifact)
        counters = load_counters(a.counters, art.sha256)
        acc = load_accelerator(a.accel)
        cost = estimate_cost(art, counters, acc, a.scheme, uniform_policy=a.uniform_policy)
        t = cost["totals"]
        print(f"{cost['scheme']} ({cost['realization']}) on {acc.name}: {cost['images']} image(s), "
              f"{t['energy_pj']['total'] * 1e-6:.1f} µJ and {t['latency_s'] * 1e3:.3f} ms per image, "
              f"{t['per_output_mpix']['energy_mj']:.1f} mJ per output MP, utilisation {t['utilisation']:.2f}")
        for w in cost["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        if a.compare:
            for r in compare_schemes(art, counters, acc, uniform_policy=a.uniform_policy):
                print(f"  {r['scheme']:9s} {r['realization']:8s} {r['energy_uj']:10.1f} µJ {r['latency_ms']:9.3f} ms "
                      f"weights {r['weight_storage_kib']:8.1f} KiB  DRAM {r['dram_mib']:7.2f} MiB  "
                      f"conv inputs {r['conv_input_bits']} bits")
        if a.out:
            atomic_write_json(a.out, cost)
        return 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
