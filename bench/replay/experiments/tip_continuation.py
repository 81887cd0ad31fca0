#!/usr/bin/python3
"""A per-chain signal for the multi-turn gap (docs/policy.md, "Other variants"): prefix-slru
puts a request's new blocks on probation, which loses a conversation's last turn before the
next one comes; putting every continuation of a reused prefix in protected (slru_variants.py
`cont`) wins that back but lets the Zipf traces' one-off suffixes in too. What tells the two
apart, per chain: a conversation's next turn hits exactly up to the *tip* of an earlier
request (the whole previous turn), while a one-off suffix on a shared document hits up to the
document's end, which was no request's tip. So:

  tip        a request whose hit run ends at a block that was the last block of an earlier
             request (a bit kept on the cached block) inserts its new blocks in protected.
  tip-prob   the same, but the new blocks go to probation's hot end with the parent's
             segment rule relaxed (baseline for what protected adds).

Usage: tip_continuation.py [--capacity-blocks ...] TRACE.jsonl...
"""
import argparse

import sim
from sim import PrefixSlru


class TipSlru(PrefixSlru):
    to_protected = True

    def __init__(self, capacity):
        super().__init__(capacity)
        self.tips = set()  # cached blocks that ended a request
        self.continuing = False

    def start_request(self, ids, h):
        self.continuing = h > 0 and ids[h - 1] in self.tips
        # A turn continues its conversation's tip once; the next turn has a tip of its own.
        # A shared document's end that once ended a request stops counting after that.
        if self.continuing:
            self.tips.discard(ids[h - 1])

    def end_request(self, ids):
        # The traces end every request in a partial block of its own (a real prompt's last
        # tokens, which a daemon never sees as a key): the tip is the last full block.
        if len(ids) >= 2 and ids[-2] in self.nodes:
            self.tips.add(ids[-2])

    def remove(self, key):
        self.tips.discard(key)
        super().remove(key)

    def returning(self, fp):
        # A continuing request's new blocks start protected (tip) or on probation (tip-prob),
        # whatever the ghost says.
        return self.to_protected if self.continuing else super().returning(fp)


class TipProb(TipSlru):
    to_protected = False


class Base(TipSlru):
    def start_request(self, ids, h):
        self.continuing = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity-blocks", default="2000,5859,10000,20000")
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    caps = [int(c) for c in args.capacity_blocks.split(",")]
    for t in args.traces:
        reqs = sim.load(t)
        total = sum(len(r) for r in reqs)
        for name, f in (("prefix-slru", Base), ("tip", TipSlru), ("tip-prob", TipProb),
                        ("lru", sim.Lru)):
            rates = [100 * sim.replay(reqs, f, c)[0] / total for c in caps]
            print(f"{t.rsplit('/', 1)[-1]:24s} {name:12s}", " ".join(f"{r:6.2f}" for r in rates),
                  flush=True)


if __name__ == "__main__":
    main()
