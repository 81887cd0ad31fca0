#!/usr/bin/python3
"""Writes a synthetic request trace in the Mooncake format (shared/traces/README.md), to test
eviction policies on workloads other than the Mooncake trace. Deterministic for a given seed.

  zipf       Shared prompts (400 of them, 2-48 blocks each) picked by a Zipf(alpha) law, each
             request followed by 1-24 blocks of its own. Tests frequency skew: a few prefixes
             reused a lot, a long tail of one-off blocks.
  multiturn  Conversations arriving as a Poisson process: a system prompt (60, Zipf(alpha)),
             an optional document (0-40 blocks), then turns (1 + exponential(mean 3)) that
             each add 1-6 blocks of user input and 0-2 of model output, with exponential think
             times between turns, so conversations interleave. Each request ends in a partial
             block of its own, as a real prompt's last 512 tokens do. Tests recency: the next
             turn needs what the previous turn left.

Usage: gen_synthetic_trace.py --kind zipf|multiturn [--requests N] [--alpha A] [--seed S] --out FILE
"""
import argparse
import bisect
import json
import random


def zipf_sampler(n, alpha, rng):
    weights = [1 / (i + 1) ** alpha for i in range(n)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    return lambda: min(bisect.bisect_left(cdf, rng.random()), n - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["zipf", "multiturn"], required=True)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    next_id = [0]

    def fresh(k):
        ids = list(range(next_id[0], next_id[0] + k))
        next_id[0] += k
        return ids

    requests = []  # (arrival ms, hash ids)
    if args.kind == "zipf":
        prompts = [fresh(rng.randint(2, 48)) for _ in range(400)]
        pick = zipf_sampler(len(prompts), args.alpha, rng)
        t = 0.0
        for _ in range(args.requests):
            t += rng.expovariate(1 / 250)
            requests.append((t, prompts[pick()] + fresh(rng.randint(1, 24))))
    else:
        system = [fresh(rng.randint(2, 16)) for _ in range(60)]
        pick = zipf_sampler(len(system), args.alpha, rng)
        t, made = 0.0, 0
        while made < args.requests:
            t += rng.expovariate(1 / 900)
            history = list(system[pick()]) + fresh(rng.randint(0, 40))
            turn_at = t
            for _ in range(1 + int(rng.expovariate(1 / 3.0))):
                history = history + fresh(rng.randint(1, 6))
                requests.append((turn_at, history + fresh(1)))
                history = history + fresh(rng.randint(0, 2))
                turn_at += rng.expovariate(1 / 60000)
                made += 1
        requests.sort(key=lambda r: r[0])
        requests = requests[: args.requests]

    with open(args.out, "w") as f:
        for t, ids in requests:
            f.write(json.dumps({"timestamp": int(t),
                                "input_length": len(ids) * 512 - rng.randint(0, 511),
                                "output_length": rng.randint(1, 400),
                                "hash_ids": ids}) + "\n")


if __name__ == "__main__":
    main()
