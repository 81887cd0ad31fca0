#!/usr/bin/python3
"""What a trace offers an eviction policy, measured (docs/policy.md, "Why not 45 %").

  survival   F(T) by depth: the share of first-seen blocks whose second use comes within T,
             T counted in blocks first seen in between (what an LRU-like probation spends).
             If F were convex, holding fewer blocks of each new prompt for longer would pay
             (depth_probation.py tries it).
  hazard     per prompt (requests keyed by their first block), the chance of another use
             within H requests, by uses so far and by requests since the last use, sampled
             every 25 requests: whether recency or frequency tells the next use.

Usage: trace_structure.py survival|hazard [--horizon H] TRACE.jsonl...
"""
import argparse
import bisect
import collections

import sim


def survival(path):
    reqs = sim.load(path)
    clock, seen, start = 0, set(), []  # clock: blocks seen for the first time so far
    for ids in reqs:
        start.append(clock)
        for b in ids:
            if b not in seen:
                seen.add(b)
                clock += 1
    buckets = [1, 2, 4, 8, 16, 32, 64, 128, 1 << 30]
    first, uses = {}, collections.Counter()
    count, gaps = collections.Counter(), collections.defaultdict(list)
    for i, ids in enumerate(reqs):
        for d, b in enumerate(ids):
            uses[b] += 1
            k = buckets[bisect.bisect_right(buckets, d)]
            if uses[b] == 1:
                first[b] = (i, k)
                count[k] += 1
                count[0] += 1
            elif uses[b] == 2:
                i0, k0 = first[b]
                gaps[k0].append(start[i] - start[i0])
                gaps[0].append(start[i] - start[i0])
    ts = [1000, 2000, 4000, 6000, 8000, 10000, 20000]
    print("  depth   blocks  reused " + " ".join(f"F({t})" for t in ts))
    for k in sorted(count):
        g = sorted(gaps[k])
        f = [bisect.bisect_right(g, t) / count[k] for t in ts]
        label = "all" if k == 0 else f">= {buckets[-2]}" if k == buckets[-1] else f"< {k}"
        print(f"{label:>7} {count[k]:8d}  {len(g) / count[k]:6.3f} "
              + " ".join(f"{x:7.3f}" for x in f))


def hazard(path, horizon):
    reqs = sim.load(path)
    uses = collections.defaultdict(list)
    for i, ids in enumerate(reqs):
        uses[ids[0]].append(i)
    ages = [100, 200, 400, 800, 1600, 3200]
    stat = collections.defaultdict(lambda: [0, 0])
    for t in range(500, len(reqs) - horizon, 25):
        for us in uses.values():
            k = bisect.bisect_right(us, t)
            if k == 0:
                continue
            a = bisect.bisect_right(ages, t - us[k - 1])
            again = k < len(us) and us[k] <= t + horizon
            s = stat[(min(k, 5), a)]
            s[0] += 1
            s[1] += again
    print(f"P(another use within {horizon} requests); columns: requests since the last use "
          "< " + ", < ".join(map(str, ages)) + ", more")
    for k in range(1, 6):
        cells = []
        for a in range(len(ages) + 1):
            n, y = stat[(k, a)]
            cells.append(f"{y / n:5.2f}" if n >= 100 else "    -")
        print(f"  {'5+' if k == 5 else k:>2} uses " + " ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["survival", "hazard"])
    ap.add_argument("--horizon", type=int, default=300)
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    for t in args.traces:
        print(t.rsplit("/", 1)[-1])
        survival(t) if args.what == "survival" else hazard(t, args.horizon)


if __name__ == "__main__":
    main()
