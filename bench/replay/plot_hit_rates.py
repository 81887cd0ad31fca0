#!/usr/bin/python3
"""Plots hit rate against cache size, one panel per trace, from kvtier-replay --json output.

Usage: plot_hit_rates.py --out FILE.png TITLE=RESULTS.jsonl [TITLE=RESULTS.jsonl ...]
where each RESULTS.jsonl holds the lines of
  kvtier-replay --trace T --capacity-blocks ... --policy all --belady --json
"""
import argparse
import collections
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {  # policy -> (colour, line style, marker)
    "prefix-slru": ("tab:red", "-", "o"),
    "lru": ("black", "-", "s"),
    "s3fifo": ("tab:blue", "-", "^"),
    "sieve": ("tab:olive", "-", "v"),
    "arc": ("tab:green", "-", "D"),
    "tinylfu": ("tab:purple", "-", "x"),
    "belady": ("grey", "--", None),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("panels", nargs="+", metavar="TITLE=RESULTS.jsonl")
    args = ap.parse_args()
    cols = min(2, len(args.panels))
    rows = (len(args.panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.3 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(args.panels):]:
        ax.axis("off")
    for ax, panel in zip(flat, args.panels):
        title, path = panel.split("=", 1)
        rates = collections.defaultdict(dict)
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                rates[r["policy"]][r["capacity_blocks"]] = 100 * r["hit_rate"]
        for policy, by_capacity in rates.items():
            caps = sorted(by_capacity)
            colour, style, marker = STYLE.get(policy, ("tab:brown", ":", "."))
            ax.plot(caps, [by_capacity[c] for c in caps], style, color=colour, marker=marker,
                    label=policy + (" (default)" if policy == "prefix-slru" else ""),
                    linewidth=2 if policy in ("prefix-slru", "belady") else 1.2)
        ax.set_xscale("log")
        ax.set_xticks(caps)
        ax.set_xticklabels([f"{c:,}" for c in caps], rotation=30)
        ax.minorticks_off()
        ax.set_xlabel("cache capacity (blocks)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.set_ylabel("hit rate (% of prompt blocks)")
    flat[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
