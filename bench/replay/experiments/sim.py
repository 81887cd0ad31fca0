#!/usr/bin/python3
"""Offline prototype of kvtier's eviction policies over the replay's semantics (see
docs/policy.md, "Replay semantics"), for trying policy ideas before writing them in C++.

The replay and the `lru` and `prefix-slru` ports follow bench/replay/replay.cc and
tiers/src/policy/prefix_slru_policy.cc decision for decision (the ghost filter included, bit
for bit), so their figures match kvtier-replay's exactly; check that before trusting a variant.

Usage: sim.py [--capacity-blocks 2000,5859,...] [--policy lru,prefix-slru,belady] TRACE.jsonl...

Other scripts here import it: depth_probation.py, slru_variants.py, adaptive_share.py.
"""
import argparse
import functools
import heapq
import json

M64 = (1 << 64) - 1


def mix64(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


class GhostFilter:
    """tiers/src/policy/ghost_filter.cc: two generations of a blocked Bloom filter."""

    def __init__(self, capacity):
        self.per_gen = max(capacity // 2, 1)
        self.npairs = max(self.per_gen * 10 // 512, 1)
        self.gens = [[0] * self.npairs, [0] * self.npairs]
        self.cur = 0
        self.inserted = 0

    @staticmethod
    def _bits(h):
        bits = mix64(h ^ 0x9E3779B97F4A7C15)
        m = 0
        for i in range(6):
            m |= 1 << ((bits >> (9 * i)) & 511)
        return m

    def insert(self, fp):
        if self.inserted == self.per_gen:
            self.cur ^= 1
            self.gens[self.cur] = [0] * self.npairs
            self.inserted = 0
        h = mix64(fp)
        p = (h * self.npairs) >> 64
        self.gens[self.cur][p] |= self._bits(h)
        self.inserted += 1

    def contains(self, fp):
        h = mix64(fp)
        p = (h * self.npairs) >> 64
        m = self._bits(h)
        return (self.gens[0][p] & m) == m or (self.gens[1][p] & m) == m


class DList:
    """EntryList: doubly linked list over node attributes `hotter`/`colder`."""

    __slots__ = ("hot", "cold", "size")

    def __init__(self):
        self.hot = self.cold = None
        self.size = 0

    def _link(self, n, colder, hotter):
        n.colder, n.hotter = colder, hotter
        if colder is not None:
            colder.hotter = n
        else:
            self.cold = n
        if hotter is not None:
            hotter.colder = n
        else:
            self.hot = n
        self.size += 1

    def push_hot(self, n):
        self._link(n, self.hot, None)

    def push_cold(self, n):
        self._link(n, None, self.cold)

    def insert_colder_than(self, n, anchor):
        self._link(n, anchor.colder, anchor)

    def unlink(self, n):
        if n.hotter is not None:
            n.hotter.colder = n.colder
        else:
            self.hot = n.colder
        if n.colder is not None:
            n.colder.hotter = n.hotter
        else:
            self.cold = n.hotter
        n.hotter = n.colder = None
        self.size -= 1


class Node:
    __slots__ = ("key", "hotter", "colder", "fp", "parent", "children", "seg", "depth", "extra")

    def __init__(self, key, fp):
        self.key = key
        self.hotter = self.colder = None
        self.fp = fp
        self.parent = None
        self.children = []  # most recently attached first, as first_child/next_sibling
        self.seg = None
        self.depth = 0
        self.extra = None


class Lru:
    def __init__(self, capacity):
        self.l = DList()
        self.nodes = {}

    def insert(self, key, parent, fp):
        n = Node(key, fp)
        self.nodes[key] = n
        self.l.push_hot(n)

    def access(self, key):
        n = self.nodes[key]
        self.l.unlink(n)
        self.l.push_hot(n)

    def remove(self, key):
        self.l.unlink(self.nodes.pop(key))

    def victim(self):
        return self.l.cold.key


PROB, PROT = 0, 1


class PrefixSlru:
    """Port of prefix_slru_policy.cc. Hooks for variants: `admit_segment`, `victim_lists`."""

    protected_percent = 80
    ghost_per_capacity = 4

    def __init__(self, capacity):
        self.capacity = capacity
        self.ghost = GhostFilter(capacity * self.ghost_per_capacity)
        self.nodes = {}
        self.segs = [DList(), DList()]
        self.last_placed = [None, None]

    # ---- interface
    def insert(self, key, parent_key, fp):
        n = Node(key, fp)
        self.nodes[key] = n
        if parent_key is not None:
            p = self.nodes[parent_key]
            n.parent = p
            p.children.insert(0, n)
            n.depth = p.depth + 1
        returning = self.returning(fp)
        self.on_new(n, returning)
        parent_on_prob = n.parent is not None and n.parent.seg == PROB
        self.place(n, PROT if returning and not parent_on_prob else PROB, True)

    def returning(self, fp):
        """Whether a new block starts protected (its parent permitting): the ghost remembers it."""
        return fp != 0 and self.ghost.contains(fp)

    def on_new(self, n, returning):
        pass

    def access(self, key):
        n = self.nodes[key]
        self.segs[n.seg].unlink(n)
        self.place(n, PROT, False)

    def remove(self, key):
        n = self.nodes.pop(key)
        self.segs[n.seg].unlink(n)
        n.seg = None
        if n.fp:
            self.ghost.insert(n.fp)
        self.detach(n)
        while n.children:
            ch = n.children[0]
            self.detach(ch)
            self.segs[ch.seg].unlink(ch)
            ch.seg = PROB
            self.segs[PROB].push_cold(ch)

    def victim_segments(self):
        # The segments a victim is looked for in, first to last (subclasses with more levels).
        return (PROB, PROT)

    def victim(self):
        self.balance()
        for seg in self.victim_segments():
            lst = self.segs[seg]
            steps = lst.size
            n = lst.cold
            while n is not None and steps > 0:
                steps -= 1
                nxt = n.hotter
                if not n.children:
                    return n.key
                tip = self.tip_below(n, seg)
                if tip is not None:
                    return tip.key
                lst.unlink(n)
                lst.push_hot(n)
                n = nxt
        raise RuntimeError("no victim")

    # ---- internals
    def detach(self, n):
        if n.parent is not None:
            n.parent.children.remove(n)
            n.parent = None

    def place(self, n, seg, inserting):
        lst = self.segs[seg]
        n.seg = seg
        p = n.parent
        if p is not None and p.seg == seg and (inserting or self.last_placed[seg] is p):
            lst.insert_colder_than(n, p)
        else:
            lst.push_hot(n)
        self.last_placed[seg] = n

    def balance(self):
        prot, prob = self.segs[PROT], self.segs[PROB]
        while prot.size * 100 > (prot.size + prob.size) * self.protected_percent:
            d = prot.cold
            prot.unlink(d)
            d.seg = PROB
            prob.push_hot(d)
            self.on_demoted(d)

    def on_demoted(self, n):
        """A block moved from protected to probation by balance(); variants hook in here."""

    def tip_below(self, n, seg):
        while n.children:
            for ch in n.children:
                if ch.seg == seg:
                    break
            else:
                return None
            n = ch
        return n


POLICIES = {"lru": Lru, "prefix-slru": PrefixSlru}


@functools.lru_cache(maxsize=None)
def load(path):
    with open(path) as f:
        return tuple(json.loads(line)["hash_ids"] for line in f)


def replay_hits(reqs, policy_factory, capacity):
    """The hit length of each request (bench/replay/replay.cc, Replay)."""
    pol = policy_factory(capacity)
    begin = getattr(pol, "begin_request", None)  # optional: (request length, hit length)
    start = getattr(pol, "start_request", None)  # optional: (ids, hit length)
    end = getattr(pol, "end_request", None)  # optional: (ids), once its blocks are offered
    cache = set()
    hits = []
    for ids in reqs:
        h = 0
        while h < len(ids) and ids[h] in cache:
            h += 1
        hits.append(h)
        if begin:
            begin(len(ids), h)
        if start:
            start(ids, h)
        for j in range(h - 1, -1, -1):
            pol.access(ids[j])
        for j in range(h, len(ids)):
            b = ids[j]
            if b in cache:
                pol.access(b)
                continue
            if len(cache) >= capacity:
                v = pol.victim()
                pol.remove(v)
                cache.remove(v)
            # The parent is looked up after the eviction: the victim may have been it.
            parent = ids[j - 1] if j > 0 and ids[j - 1] in cache else None
            cache.add(b)
            pol.insert(b, parent, b + 1)
        if end:
            end(ids)
    return hits


def belady_hits(reqs, capacity):
    """ReplayBelady: MIN over requests, ties to the smallest trace id."""
    never = 1 << 62
    nxt, seen = [None] * len(reqs), {}
    for i in range(len(reqs) - 1, -1, -1):
        nxt[i] = [seen.get(b, never) for b in reqs[i]]
        for b in reqs[i]:
            seen[b] = i
    next_of, heap, hits = {}, [], []
    for i, ids in enumerate(reqs):
        h = 0
        while h < len(ids) and ids[h] in next_of:
            h += 1
        hits.append(h)
        for j, b in enumerate(ids):
            next_of[b] = nxt[i][j]
            heapq.heappush(heap, (-nxt[i][j], b))
            while len(next_of) > capacity:
                n, v = heapq.heappop(heap)
                if next_of.get(v) == -n:  # else a stale entry
                    del next_of[v]
    return hits


def replay(reqs, policy_factory, capacity):
    """(hit blocks, all blocks); policy_factory "belady" replays Belady."""
    if policy_factory == "belady":
        hits = belady_hits(reqs, capacity)
    else:
        hits = replay_hits(reqs, policy_factory, capacity)
    return sum(hits), sum(len(r) for r in reqs)


def by_use(reqs, hits):
    """Hit blocks by which use of the block they were (1, 2, 3, 4 = fourth or later), as
    fractions of all blocks: where a policy wins or loses against another."""
    uses, out = {}, [0, 0, 0, 0, 0]
    for ids, h in zip(reqs, hits):
        for j, b in enumerate(ids):
            uses[b] = uses.get(b, 0) + 1
            if j < h:
                out[min(uses[b], 4)] += 1
    total = sum(len(r) for r in reqs)
    return [x / total for x in out]


POLICIES = {"lru": Lru, "prefix-slru": PrefixSlru, "belady": "belady"}


def table(name, factory, traces, caps):
    """Prints and returns one line of hit rates (%) per trace."""
    rows = []
    for t in traces:
        reqs = load(t)
        rates = [100 * h / tot for h, tot in (replay(reqs, factory, c) for c in caps)]
        rows.append(rates)
        print(f"{t.rsplit('/', 1)[-1]:24s} {name:28s}", " ".join(f"{r:6.2f}" for r in rates),
              flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity-blocks", default="2000,5859,10000,20000")
    ap.add_argument("--policy", default="lru,prefix-slru,belady")
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    caps = [int(c) for c in args.capacity_blocks.split(",")]
    for name in args.policy.split(","):
        table(name, POLICIES[name], args.traces, caps)


if __name__ == "__main__":
    main()
