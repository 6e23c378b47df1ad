"""Per-packet server CPU of two source trees, interleaved in one run: the forwarding benchmark
(bench/forwarding.py) against a server from another tree (for example a git worktree at an
older commit) and against this one, alternately, several rounds.

    git worktree add /tmp/sfu-old 0f1ea81
    python -m bench.compare --tree old=/tmp/sfu-old                 # 1x6 and 4x3, 5 rounds
    python -m bench.compare --tree old=/tmp/sfu-old --tree head=/tmp/sfu-head --no-twcc

Variants: each ``--tree`` (the server runs from that tree's sfu/ package), then this tree
("this"), and with ``--no-twcc`` this tree again with participants that decline transport-cc
(what the feedback itself costs). The synthetic participants always run this tree's client, so
every server gets the same load; a server that does not offer transport-cc simply gets no
transport-cc feedback. Each round runs the variants in turn, the order reversed every other
round, so that a drift in the machine's load spreads over all of them. Printed: every run (with
"us/rx", the same CPU per packet the server received), then per scenario and variant the median CPU
microseconds per forwarded packet, the median forwarded
packets/s and delivered ratio, and the median of the per-round ratios to the first variant (each
ratio taken within one round, on the same machine state). The machine is shared: read ratios,
not absolute figures, and distrust rounds where delivery fell (the machine was short of CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.forwarding import run_scenario


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path | None  # None: this tree
    twcc: bool = True  # the participants accept transport-cc


def parse_tree(text: str) -> Variant:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--tree wants NAME=PATH, not {text!r}")
    tree = Path(path)
    if not (tree / "sfu" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a source tree of this project (no sfu/cli.py)")
    return Variant(name, tree)


def summarize(runs: list[tuple[int, str, str, dict[str, Any]]], names: list[str],
              min_delivered: float = 0.95) -> None:
    """Medians per (scenario, variant) and the median per-round ratio to the first variant,
    over the runs that delivered at least ``min_delivered`` of what was sent: in the others the
    machine was short of CPU (participants starved, video paused), and a forwarded packet then
    carries a bigger share of the fixed costs, whatever the server's code."""
    first = names[0]
    kept = [r for r in runs if r[3]["delivered_ratio"] >= min_delivered]
    if len(kept) < len(runs):
        print(f"\n{len(runs) - len(kept)} run(s) left out: delivered under {100 * min_delivered:.0f} %")
    runs = kept
    print()
    print(f"{'scenario':>8} {'variant':>14} {'runs':>4} {'us/pkt med':>10} {'min':>6} {'max':>6} "
          f"{'fwd pkt/s':>9} {'delivered':>9} {'ratio to ' + first:>16}")
    for scenario in dict.fromkeys(r[1] for r in runs):
        by_round: dict[str, dict[int, float]] = {v: {} for v in names}
        pps: dict[str, list[float]] = {v: [] for v in names}
        delivered: dict[str, list[float]] = {v: [] for v in names}
        for round_no, sc, variant, row in runs:
            if sc == scenario:
                by_round[variant][round_no] = row["us_per_forwarded_packet"]
                pps[variant].append(row["forwarded_pps"])
                delivered[variant].append(row["delivered_ratio"])
        for variant in names:
            values = list(by_round[variant].values())
            if not values:
                continue
            ratios = [value / by_round[first][r] for r, value in by_round[variant].items()
                      if r in by_round[first]]
            ratio = f"{statistics.median(ratios):16.3f}" if variant != first and ratios else ""
            print(f"{scenario:>8} {variant:>14} {len(values):4d} {statistics.median(values):10.1f} "
                  f"{min(values):6.1f} {max(values):6.1f} {statistics.median(pps[variant]):9.0f} "
                  f"{100 * statistics.median(delivered[variant]):8.2f}% {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=parse_tree, action="append", default=[], metavar="NAME=PATH",
                        help="a source tree to run the server from (its sfu/ package), repeatable; "
                             "the first variant is the one ratios are taken to")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenarios", default="1x6,4x3", help="comma list of RxP (default 1x6,4x3)")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-twcc", action="store_true",
                        help="also run this tree with participants that decline transport-cc")
    parser.add_argument("--min-delivered", type=float, default=0.95,
                        help="leave out of the summary the runs that delivered less (default 0.95)")
    args = parser.parse_args(argv)
    if not args.tree:
        parser.error("give at least one --tree NAME=PATH to compare with")
    from sfu.client.media import ClipParams, default_clip_dir, load_clip

    clip_dir = default_clip_dir()
    load_clip(clip_dir, ClipParams())  # generate once, before the workers start
    scenarios = [tuple(int(x) for x in s.split("x")) for s in args.scenarios.split(",")]
    variants = [*args.tree, Variant("this", None)]
    if args.no_twcc:
        variants.append(Variant("this, no twcc", None, twcc=False))
    runs: list[tuple[int, str, str, dict[str, Any]]] = []
    print(f"{'round':>5} {'scenario':>8} {'variant':>14} {'us/pkt':>7} {'us/rx':>6} {'cpu %':>6} "
          f"{'fwd pkt/s':>9} {'delivered':>9} {'degraded':>8} {'tool cpu %':>10}", flush=True)
    for round_no in range(args.rounds):
        order = variants if round_no % 2 == 0 else variants[::-1]
        for rooms, people in scenarios:
            for variant in order:
                row = run_scenario(rooms, people, args.seconds, args.workers, str(clip_dir),
                                   tree=variant.tree, client_twcc=variant.twcc)
                runs.append((round_no, row["scenario"], variant.name, row))
                print(f"{round_no:5d} {row['scenario']:>8} {variant.name:>14} "
                      f"{row['us_per_forwarded_packet']:7.1f} {row['us_per_received_packet']:6.1f} "
                      f"{row['server_cpu_percent']:6.1f} "
                      f"{row['forwarded_pps']:9.0f} {100 * row['delivered_ratio']:8.2f}% "
                      f"{row['quality_downgrades']:8.0f} {row['tool_cpu_percent']:10.1f}",
                      flush=True)
                for error in row["errors"][:3]:
                    print(f"      error: {error}", flush=True)
    summarize(runs, [v.name for v in variants], args.min_delivered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
