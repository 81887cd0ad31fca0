#!/usr/bin/python3
"""Other changes to prefix-slru tried offline, beside depth_probation.py (docs/policy.md, "Why
not 45 %"). Each follows from something measured on the traces:

  pp=P       protected share P % instead of 80 (the default's one constant).
  levels=S   protected levels with shares S (.5/.3 is two; S4LRU-like, Huang et al.,
             SOSP'13): a use moves a block up one level, each level's share is capped and
             its overflow goes to the hot end of the level below. On the Mooncake trace the
             chance of another use rises with the uses so far (0.18 after one, 0.8 after two
             or more) and the gaps shrink (median 559, 405, 249, 166 requests after uses 1
             to 4).
  cont       a new block whose parent is protected (a continuation of a reused prefix, the
             next turn of a conversation) starts protected, as under LRU: the multi-turn
             trace is where prefix-slru trails LRU.
  scored:K   protected ordered by a key of the block's exact, unbounded history instead of
             last use: lru2 (penultimate use), meangap (last use + mean gap), rate (uses per
             request since the first). A separate, simpler implementation (heaps, demoted
             blocks keep their age in probation), so compare it with its own `scored:lru`,
             not with prefix-slru.

Usage: slru_variants.py [--capacity-blocks ...] [--only NAME,...] TRACE.jsonl...
"""
import argparse
import heapq

import sim
from sim import PROB, PROT, DList, Node, PrefixSlru


class MultiSlru(PrefixSlru):
    shares = (0.8,)  # cap of levels 1.. as a share of the class; (0.8,) is prefix-slru

    def __init__(self, capacity):
        super().__init__(capacity)
        self.n = len(self.shares) + 1
        self.segs = [DList() for _ in range(self.n)]
        self.last_placed = [None] * self.n

    def insert(self, key, parent_key, fp):
        n = Node(key, fp)
        self.nodes[key] = n
        if parent_key is not None:
            p = self.nodes[parent_key]
            n.parent = p
            p.children.insert(0, n)
        level = 1 if fp != 0 and self.ghost.contains(fp) else 0
        if n.parent is not None:
            level = min(level, n.parent.seg)
        self.place(n, level, True)

    def access(self, key):
        n = self.nodes[key]
        self.segs[n.seg].unlink(n)
        self.place(n, min(n.seg + 1, self.n - 1), False)

    def balance(self):
        total = sum(s.size for s in self.segs)
        for i in range(self.n - 1, 0, -1):
            s = self.segs[i]
            while s.size > total * self.shares[i - 1]:
                d = s.cold
                s.unlink(d)
                d.seg = i - 1
                self.segs[i - 1].push_hot(d)

    def victim_segments(self):
        return range(self.n)


class ContinuationProtected(PrefixSlru):
    def insert(self, key, parent_key, fp):
        n = Node(key, fp)
        self.nodes[key] = n
        p = self.nodes[parent_key] if parent_key is not None else None
        if p is not None:
            n.parent = p
            p.children.insert(0, n)
        returning = fp != 0 and self.ghost.contains(fp)
        if p is not None and p.seg == PROT:
            seg = PROT
        else:
            seg = PROT if returning and not (p is not None and p.seg == PROB) else PROB
        self.place(n, seg, True)


class Scored:
    key = "lru"
    protected_percent = 80

    def __init__(self, capacity):
        self.now, self.seq = 0, 0
        self.hist, self.nodes, self.stamp = {}, {}, {}
        self.heaps, self.size = [[], []], [0, 0]

    def begin_request(self, length, hit):
        self.now += 1

    def order(self, n):  # larger goes first
        k, first, prev, last = self.hist[n.key]
        if n.seg == PROB or self.key == "lru":
            return -last
        if self.key == "lru2":
            return -prev
        if self.key == "meangap":
            return last + (last - first) / (k - 1) if k > 1 else float("inf")
        if self.key == "rate":
            return -(k - 1) / (last - first + 1) if k > 1 else float("inf")
        raise ValueError(self.key)

    def push(self, n):
        self.seq += 1
        self.stamp[n.key] = self.seq
        heapq.heappush(self.heaps[n.seg], (-self.order(n), -n.depth, self.seq, n.key))

    def use(self, key):
        h = self.hist.get(key)
        if h is None:
            self.hist[key] = [1, self.now, self.now, self.now]
        elif h[3] != self.now:
            h[0], h[2], h[3] = h[0] + 1, h[3], self.now

    def move(self, n, seg):
        if n.seg is not None:
            self.size[n.seg] -= 1
        n.seg = seg
        self.size[seg] += 1
        self.push(n)

    def insert(self, key, parent_key, fp):
        n = Node(key, fp)
        self.nodes[key] = n
        if parent_key is not None:
            p = self.nodes[parent_key]
            n.parent, n.depth = p, p.depth + 1
            p.children.insert(0, n)
        returning = key in self.hist
        self.use(key)
        on_prob = n.parent is not None and n.parent.seg == PROB
        self.move(n, PROT if returning and not on_prob else PROB)

    def access(self, key):
        self.use(key)
        self.move(self.nodes[key], PROT)

    def remove(self, key):
        n = self.nodes.pop(key)
        self.size[n.seg] -= 1
        n.seg = None
        if n.parent is not None:
            n.parent.children.remove(n)
        for ch in n.children:  # orphans go first
            ch.parent = None
            self.size[ch.seg] -= 1
            ch.seg = PROB
            self.size[PROB] += 1
            self.seq += 1
            self.stamp[ch.key] = self.seq
            heapq.heappush(self.heaps[PROB], (-float("inf"), 0, self.seq, ch.key))

    def top(self, seg):
        h = self.heaps[seg]
        while h:
            n = self.nodes.get(h[0][3])
            if n is not None and n.seg == seg and self.stamp[n.key] == h[0][2]:
                return n
            heapq.heappop(h)
        return None

    def victim(self):
        while self.size[PROT] * 100 > sum(self.size) * self.protected_percent:
            self.move(self.top(PROT), PROB)
        for seg in (PROB, PROT):
            n = self.top(seg)
            if n is not None:
                while n.children:
                    n = n.children[0]
                return n.key
        raise RuntimeError("no victim")


def variant(base, **kw):
    return type(base.__name__, (base,), kw)


VARIANTS = {"prefix-slru": PrefixSlru}
VARIANTS.update({f"pp={p}": variant(PrefixSlru, protected_percent=p) for p in (60, 70, 90, 95)})
VARIANTS["levels=.5/.3"] = variant(MultiSlru, shares=(0.5, 0.3))
VARIANTS["levels=.4/.4"] = variant(MultiSlru, shares=(0.4, 0.4))
VARIANTS["levels=.3/.3/.2"] = variant(MultiSlru, shares=(0.3, 0.3, 0.2))
VARIANTS["cont"] = ContinuationProtected
VARIANTS.update({f"scored:{k}": variant(Scored, key=k) for k in ("lru", "lru2", "meangap", "rate")})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity-blocks", default="2000,5859,10000,20000")
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    caps = [int(c) for c in args.capacity_blocks.split(",")]
    for name in args.only.split(","):
        sim.table(name, VARIANTS[name], args.traces, caps)


if __name__ == "__main__":
    main()
