#!/usr/bin/python3
"""Depth-truncated probation for prefix-slru, tried offline (docs/policy.md, "Why not 45 %").

The idea: a prompt's blocks are worth something only as a leading run, and a first-seen prompt
returns (if at all) after a gap mostly longer than probation lasts. If F(T), the chance that a
block held for time T is used again within T, were convex over the range probation covers,
holding fewer blocks of each new prompt for longer would win: keep a first-seen chain's
leading blocks only, so that those of many more prompts survive to their second use (which
then re-inserts the whole prompt, protected through the ghost). With F linear, it is a wash
(trace_structure.py survival measures F).

  variants   hit rates of the variants below against prefix-slru on the given traces
  by-use     at the first capacity given, hit blocks by which use of the block they were
             (second, third, fourth or later), for lru, belady and the variants

Variants (all on top of sim.PrefixSlru, the exact port of the C++ policy):
  cap=D      a probationary block at run depth >= D (blocks since the chain's last block
             outside probation: a new prompt's root is 0) goes to a third segment, evicted
             before probation, oldest first, except the block inserted last (the next block
             of the same request needs it as its parent).
  frac=F     the same, keeping the first ceil(F * n) of the request's n new blocks.
  ordered    probation evicts its deepest block (run depth) first, oldest among equals.
  adaptive   cap=D with D adapted per request from why its hit stopped: the first missing
             block was cut as too deep (its ancestors survived) -> D * 1.25; it aged out of
             probation, cap or no cap -> D / 1.25 (exact ghost of reasons, 4x capacity).

Usage: depth_probation.py variants|by-use [--capacity-blocks ...] [--only NAME,...] TRACE...
"""
import argparse
import heapq

import sim
from sim import PROB, PROT, DList, PrefixSlru

DEEP = 2  # the third segment of Truncated


class Truncated(PrefixSlru):
    cap = 4
    frac = None

    def __init__(self, capacity):
        super().__init__(capacity)
        self.segs.append(DList())
        self.last_placed.append(None)
        self.last_inserted = None
        self.new_blocks = 0  # of the current request

    def begin_request(self, length, hit):
        self.new_blocks = length - hit

    def insert(self, key, parent_key, fp):
        super().insert(key, parent_key, fp)
        self.last_inserted = self.nodes[key]

    def on_new(self, n, returning):
        p = n.parent
        n.extra = 0 if p is None or p.seg == PROT else p.extra + 1  # run depth

    def limit(self):
        if self.frac is not None:
            return max(1, -int(-self.frac * self.new_blocks // 1))
        return self.cap

    def place(self, n, seg, inserting):
        if inserting and seg == PROB and n.extra >= self.limit():
            seg = DEEP
        super().place(n, seg, inserting)

    def balance(self):
        prot, prob = self.segs[PROT], self.segs[PROB]
        total = prot.size + prob.size + self.segs[DEEP].size
        while prot.size * 100 > total * self.protected_percent:
            d = prot.cold
            prot.unlink(d)
            d.seg = PROB
            prob.push_hot(d)

    def victim(self):
        deep = self.segs[DEEP]
        steps, n = deep.size, deep.cold
        while n is not None and steps > 0:
            steps -= 1
            nxt = n.hotter
            t = n if not n.children else self.tip_below(n, DEEP)
            if t is not None and t is not self.last_inserted:
                return t.key
            deep.unlink(n)
            deep.push_hot(n)
            n = nxt
        return super().victim()


class AdaptiveTrunc(Truncated):
    step = 1.25

    def __init__(self, capacity):
        super().__init__(capacity)
        self.capf = 4.0
        self.why = {}  # evicted block -> segment it left, oldest first
        self.first_insert = False

    def limit(self):
        return max(1, int(self.capf))

    def begin_request(self, length, hit):
        super().begin_request(length, hit)
        self.first_insert = True

    def insert(self, key, parent_key, fp):
        if self.first_insert:  # the request's first missing block: why did its hit stop?
            self.first_insert = False
            why = self.why.get(key)
            if why == DEEP and parent_key is not None:
                self.capf = min(self.capf * self.step, 1e6)
            elif why == PROB:
                self.capf = max(self.capf / self.step, 1.0)
        super().insert(key, parent_key, fp)

    def remove(self, key):
        self.why[key] = self.nodes[key].seg
        if len(self.why) > 4 * self.capacity:
            del self.why[next(iter(self.why))]
        super().remove(key)


class DepthOrdered(PrefixSlru):
    def __init__(self, capacity):
        super().__init__(capacity)
        self.heap, self.seq, self.stamp, self.last_inserted = [], 0, {}, None

    def insert(self, key, parent_key, fp):
        super().insert(key, parent_key, fp)
        self.last_inserted = self.nodes[key]

    def on_new(self, n, returning):
        p = n.parent
        n.extra = 0 if p is None or p.seg == PROT else p.extra + 1

    def _enter_probation(self, n):
        self.seq += 1
        self.stamp[n.key] = self.seq
        heapq.heappush(self.heap, (-(n.extra or 0), self.seq, n.key))

    def place(self, n, seg, inserting):
        super().place(n, seg, inserting)
        if seg == PROB:
            self._enter_probation(n)

    def on_demoted(self, n):
        self._enter_probation(n)

    def victim(self):
        self.balance()
        skipped, found = [], None
        while self.heap:
            e = self.heap[0]
            n = self.nodes.get(e[2])
            if n is None or n.seg != PROB or self.stamp.get(e[2]) != e[1]:
                heapq.heappop(self.heap)  # stale
                continue
            if n.children or n is self.last_inserted:
                skipped.append(heapq.heappop(self.heap))
                continue
            found = n.key
            break
        for e in skipped:
            heapq.heappush(self.heap, e)
        return found if found is not None else super().victim()


def variant(base, **kw):
    return type(base.__name__, (base,), kw)


VARIANTS = {"prefix-slru": PrefixSlru}
VARIANTS.update({f"cap={d}": variant(Truncated, cap=d) for d in (1, 2, 4, 8, 16, 32)})
VARIANTS.update({f"frac={f}": variant(Truncated, frac=f) for f in (0.1, 0.25, 0.5, 0.75)})
VARIANTS["ordered"] = DepthOrdered
VARIANTS["adaptive"] = AdaptiveTrunc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["variants", "by-use"])
    ap.add_argument("--capacity-blocks", default="2000,5859,10000,20000")
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    caps = [int(c) for c in args.capacity_blocks.split(",")]
    if args.what == "by-use":
        for t in args.traces:
            reqs = sim.load(t)
            print(f"{t.rsplit('/', 1)[-1]} at {caps[0]} blocks: "
                  "hit %, of it 2nd / 3rd / later uses")
            for name in ["lru", "belady"] + args.only.split(","):
                if name == "belady":
                    hits = sim.belady_hits(reqs, caps[0])
                else:
                    factory = sim.Lru if name == "lru" else VARIANTS[name]
                    hits = sim.replay_hits(reqs, factory, caps[0])
                u = sim.by_use(reqs, hits)
                print(f"  {name:12s} {100 * sum(u):6.2f}  {100 * u[2]:5.1f} {100 * u[3]:5.1f} "
                      f"{100 * u[4]:5.1f}")
        return
    for name in args.only.split(","):
        sim.table(name, VARIANTS[name], args.traces, caps)


if __name__ == "__main__":
    main()
