#!/usr/bin/python3
"""An adaptive protected share for prefix-slru, tried offline (docs/policy.md, "Not done yet":
the multi-turn trace wants recency, where LRU beats prefix-slru's fixed 80 % protected share,
and the Zipf traces want that share).

ARC's idea (Megiddo and Modha, FAST'03) on the two segments: two ghost filters instead of
one, so that a returning block says which segment let it go.
  g1  blocks evicted without ever being reused (they left from probation, seen once);
  g2  blocks evicted after a reuse (they had been protected, were demoted, then evicted).
A block that returns from g1 would have stayed with a larger probation: the protected target
shrinks. One that returns from g2 would have stayed with a larger protected segment: the
target grows. Step per return: `step` blocks times the other ghost's recent returns over this
one's (ARC's ratio of ghost sizes, here of ghost hits, bounded to [1, 16]), target kept within
[lo, hi] of the capacity. A returning block goes to protected as before.

Usage: adaptive_share.py [--capacity-blocks ...] TRACE.jsonl...
"""
import argparse

import sim
from sim import PROB, PROT, GhostFilter, PrefixSlru


def adaptive(step=1.0, lo=0.05, hi=0.95, start=0.8, ghost_each=2):
    class Adaptive(PrefixSlru):
        def __init__(self, capacity):
            super().__init__(capacity)
            self.g1 = GhostFilter(capacity * ghost_each)
            self.g2 = GhostFilter(capacity * ghost_each)
            self.target = start * capacity
            self.hits1 = 1.0
            self.hits2 = 1.0
            self.reused = set()

        def insert(self, key, parent_key, fp):
            r1 = fp != 0 and self.g1.contains(fp)
            r2 = fp != 0 and self.g2.contains(fp)
            if r2:
                self.hits2 += 1
                d = step * min(max(self.hits1 / self.hits2, 1), 16)
                self.target = min(self.target + d, hi * self.capacity)
            elif r1:
                self.hits1 += 1
                d = step * min(max(self.hits2 / self.hits1, 1), 16)
                self.target = max(self.target - d, lo * self.capacity)
            # Decay, so that the ratio follows the workload's present.
            if (self.hits1 + self.hits2) > self.capacity:
                self.hits1 /= 2
                self.hits2 /= 2
            # The base class asks self.ghost; answer for both filters.
            self.ghost = _Either(r1 or r2)
            super().insert(key, parent_key, fp)
            if r1 or r2:
                self.reused.add(key)

        def access(self, key):
            self.reused.add(key)
            super().access(key)

        def remove(self, key):
            self.ghost = _Sink(self.g2 if key in self.reused else self.g1)
            self.reused.discard(key)
            super().remove(key)

        def balance(self):
            prot, prob = self.segs[PROT], self.segs[PROB]
            while prot.size > self.target and prot.size > 0:
                d = prot.cold
                prot.unlink(d)
                d.seg = PROB
                prob.push_hot(d)
                self.on_demoted(d)

    return Adaptive


class _Either:
    def __init__(self, answer):
        self.answer = answer

    def contains(self, fp):
        return self.answer


class _Sink:
    def __init__(self, g):
        self.g = g

    def insert(self, fp):
        self.g.insert(fp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity-blocks", default="2000,5859,10000,20000")
    ap.add_argument("--only", default="")
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    caps = [int(c) for c in args.capacity_blocks.split(",")]
    variants = {
        "prefix-slru": PrefixSlru,
        "lru": sim.Lru,
        "adaptive": adaptive(),
        "adaptive step4": adaptive(step=4.0),
        "adaptive g4": adaptive(ghost_each=4),
    }
    only = set(args.only.split(",")) if args.only else None
    for name, factory in variants.items():
        if only is None or name in only:
            sim.table(name, factory, args.traces, caps)


if __name__ == "__main__":
    main()
