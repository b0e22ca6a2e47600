"""Turn a ``collectives.bench --json`` file into a markdown table of ratios to the library.

    python scripts/bench_table.py results/allreduce_p2.json [--sizes 4,1K,64K,1M,4M,16M,64M]
"""

import argparse
import json

from collectives.cli import size_list


def table(doc: dict, sizes: list[int]) -> str:
    recs = doc["records"]
    algs = [a for a in dict.fromkeys(r["algorithm"] for r in recs) if a != "mpi"]
    by = {(r["bytes"], r["algorithm"]): r for r in recs}
    head = "| bytes | mpi µs | " + " | ".join(algs) + " |"
    rows = [head, "|" + "---|" * (len(algs) + 2)]
    for s in sizes:
        if (s, "mpi") not in by:
            continue
        cells = [f"{by[(s, a)]['ratio_to_mpi']:.2f}" for a in algs]
        rows.append(f"| {s} | {by[(s, 'mpi')]['time_us']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--sizes", type=size_list, default="4,1K,64K,1M,2M,4M,8M,16M,32M,64M",
                    help="rows: comma-separated sizes in bytes")
    return ap


def main() -> None:
    args = parser().parse_args()
    with open(args.json) as f:
        doc = json.load(f)
    print(table(doc, args.sizes))


if __name__ == "__main__":
    main()
