#!/usr/bin/python3
"""Reference implementation of kvtier's block keys (docs/keys.md), hashlib only.

Independent of the C++ code on purpose: it is written from docs/keys.md, so agreement between
the two checks the spec as well as the code.

  keys_reference.py --print-vectors              print the canonical test vectors as JSON
  keys_reference.py --verify FILE                recompute every case of a vectors file
  keys_reference.py --cross-check BIN [--cases N] [--seed S]
        generate N random cases, run BIN (kvtier-keys: cases JSON on stdin, the same cases with
        canonical_encoding_hex/seed/keys filled in on stdout) and compare with this file

--verify and --cross-check may be given together. Exit status 0 when everything matches, 1 on
a mismatch (the first differing case is printed), 2 on bad usage or unreadable input.

Vectors format ("kvtier.key_vectors.v1"): {"format", "cases": [{"name", "descriptor": {
model_id, dtype, kv_layout (UTF-8 strings), block_tokens, tp_rank, tp_size, pp_rank, pp_size,
block_bytes (integers), tenant_salt_hex (raw salt bytes as hex)}, "tokens": [u32...],
"canonical_encoding_hex", "seed", "keys": [hex...]}]}.
"""

import argparse
import hashlib
import json
import random
import struct
import subprocess
import sys

FORMAT = "kvtier.key_vectors.v1"
NAMESPACE_DOMAIN = b"kvtier.ns.v1\x00"
U32_MAX = 0xFFFFFFFF


# --- The algorithm (docs/keys.md) -----------------------------------------------------------


def _u32(v):
    return struct.pack("<I", v)


def _bytes_field(b):
    return _u32(len(b)) + b


def canonical_encoding(d):
    """The bytes hashed into the namespace seed; `d` is a descriptor dict as in the vectors."""
    return b"".join([
        NAMESPACE_DOMAIN,
        _bytes_field(d["model_id"].encode("utf-8")),
        _bytes_field(d["dtype"].encode("utf-8")),
        _bytes_field(d["kv_layout"].encode("utf-8")),
        _u32(d["block_tokens"]),
        _u32(d["tp_rank"]),
        _u32(d["tp_size"] or 1),  # a size of 0 means 1
        _u32(d["pp_rank"]),
        _u32(d["pp_size"] or 1),
        _bytes_field(bytes.fromhex(d["tenant_salt_hex"])),
        struct.pack("<Q", d["block_bytes"]),
    ])


def namespace_seed(d):
    return hashlib.sha256(canonical_encoding(d)).digest()


def chain_block_key(parent, block_tokens):
    return hashlib.sha256(parent + struct.pack("<%dI" % len(block_tokens), *block_tokens)).digest()


def hash_prefix(seed, tokens, block_tokens):
    """Keys of every full block; a trailing partial block is not hashed."""
    keys = []
    parent = seed
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        parent = chain_block_key(parent, tokens[start:start + block_tokens])
        keys.append(parent)
    return keys


def compute_case(case):
    """Returns `case` with canonical_encoding_hex, seed and keys computed from its inputs."""
    d = case["descriptor"]
    seed = namespace_seed(d)
    out = dict(case)
    out["canonical_encoding_hex"] = canonical_encoding(d).hex()
    out["seed"] = seed.hex()
    out["keys"] = [k.hex() for k in hash_prefix(seed, case["tokens"], d["block_tokens"])]
    return out


# --- Test vectors -----------------------------------------------------------------------------


def _descriptor(**overrides):
    d = {
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "dtype": "bf16",
        "kv_layout": "vllm-nhd",
        "block_tokens": 16,
        "tp_rank": 0,
        "tp_size": 1,
        "pp_rank": 0,
        "pp_size": 1,
        "tenant_salt_hex": "",
        # 16 tokens x 32 layers x (K, V) x 8 KV heads x 128 dims x 2 bytes
        "block_bytes": 16 * 32 * 2 * 8 * 128 * 2,
    }
    d.update(overrides)
    return d


def _tokens(n, seed):
    rng = random.Random(seed)
    return [rng.getrandbits(32) for _ in range(n)]


def canonical_vectors():
    base = _descriptor()
    extremes = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, U32_MAX]
    inputs = [
        ("three_full_blocks", base, list(range(48))),
        ("partial_last_block_is_not_hashed", base, list(range(37))),
        ("zero_tokens", base, []),
        ("fewer_tokens_than_one_block", base, list(range(15))),
        ("llama3_vocab_ids", base, _tokens(64, 1)),
        ("tp_rank_1_of_4", _descriptor(tp_rank=1, tp_size=4), list(range(48))),
        ("tp_rank_3_of_4_pp_rank_1_of_2",
         _descriptor(tp_rank=3, tp_size=4, pp_rank=1, pp_size=2), list(range(48))),
        ("tp_size_0_encodes_as_1", _descriptor(tp_size=0, pp_size=0), list(range(48))),
        ("tenant_salt_ascii", _descriptor(tenant_salt_hex=b"tenant-42".hex()), list(range(48))),
        ("tenant_salt_non_ascii_bytes",
         _descriptor(tenant_salt_hex="00ff80c328fe7f0a0d5c22e282ac"), list(range(48))),
        ("tenant_salt_64_bytes", _descriptor(tenant_salt_hex=bytes(range(0xC0, 0x100)).hex()),
         list(range(48))),
        ("long_model_id",
         _descriptor(model_id="org-" + "x" * 300 + "/model-with-a-very-long-name-v1.0"),
         list(range(40))),
        ("unicode_model_id_and_empty_layout",
         _descriptor(model_id="Qwen/通义千问-λ-7B", kv_layout=""), list(range(40))),
        ("fp8_dtype", _descriptor(dtype="fp8e4m3", block_bytes=16 * 32 * 2 * 8 * 128),
         list(range(48))),
        ("block_tokens_1_extreme_token_values", _descriptor(block_tokens=1, block_bytes=131072),
         extremes),
        # The chained message is 32 + 4 * block_tokens bytes: 52 fits one SHA-256 block with its
        # padding, 56 is the first length that needs a second block, 64 fills one exactly.
        ("block_tokens_5_one_sha_block", _descriptor(block_tokens=5, block_bytes=655360),
         _tokens(23, 2)),
        ("block_tokens_6_padding_spills", _descriptor(block_tokens=6, block_bytes=786432),
         _tokens(23, 3)),
        ("block_tokens_8_exact_sha_block", _descriptor(block_tokens=8, block_bytes=1048576),
         _tokens(31, 4)),
        ("block_tokens_13_odd", _descriptor(block_tokens=13, block_bytes=1703936), _tokens(100, 5)),
        ("block_tokens_512_partial", _descriptor(block_tokens=512, block_bytes=67108864),
         _tokens(1100, 6)),
    ]
    cases = [compute_case({"name": name, "descriptor": d, "tokens": toks})
             for name, d, toks in inputs]
    return {"format": FORMAT, "hash": "sha256", "spec": "docs/keys.md", "cases": cases}


def random_cases(n, seed):
    """Random descriptors and token sequences of awkward sizes, for cross-checking."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019-_./ é通λ\u00ff\U0001f600"

    def text(max_len):
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))

    cases = []
    for i in range(n):
        bt = rng.choice([1, 2, 3, 5, 6, 7, 8, 13, 15, 16, 17, 31, 32, 64, 100, 128, 256, 512])
        tp_size = rng.choice([0, 1, 2, 4, 8])
        pp_size = rng.choice([0, 1, 2])
        d = {
            "model_id": text(rng.choice([0, 8, 40, 300])),
            "dtype": rng.choice(["bf16", "fp16", "fp8e4m3", "fp8e5m2", ""]),
            "kv_layout": text(12),
            "block_tokens": bt,
            "tp_rank": rng.randrange(max(tp_size, 1)),
            "tp_size": tp_size,
            "pp_rank": rng.randrange(max(pp_size, 1)),
            "pp_size": pp_size,
            "tenant_salt_hex": rng.randbytes(rng.randint(0, 64)).hex(),
            "block_bytes": rng.choice([1, 4096, 2**21, 2**40 + 7, 2**64 - 1]),
        }
        n_tokens = rng.choice([0, bt - 1, bt, bt + 1]) if rng.random() < 0.3 else \
            rng.randint(0, 6 * bt + 3)
        tokens = [rng.choice([0, U32_MAX, rng.getrandbits(32), rng.getrandbits(17)])
                  for _ in range(max(n_tokens, 0))]
        cases.append({"name": "random_%d" % i, "descriptor": d, "tokens": tokens})
    return cases


def format_vectors(vectors):
    """JSON with one field per line and token lists on one line, so diffs stay readable."""
    def dump(v):
        return json.dumps(v, ensure_ascii=False)

    head = ",\n".join(" %s: %s" % (dump(k), dump(v)) for k, v in vectors.items() if k != "cases")
    cases = []
    for case in vectors["cases"]:
        fields = []
        for k, v in case.items():
            if k == "keys":
                inner = ",\n".join("    " + dump(key) for key in v)
                fields.append('   "keys": [\n%s\n   ]' % inner if v else '   "keys": []')
            else:
                fields.append("   %s: %s" % (dump(k), dump(v)))
        cases.append("  {\n%s\n  }" % ",\n".join(fields))
    return '{\n%s,\n "cases": [\n%s\n ]\n}\n' % (head, ",\n".join(cases))


# --- Checking ---------------------------------------------------------------------------------


def _first_mismatch(expected_cases, actual_cases):
    if len(expected_cases) != len(actual_cases):
        return "case count: expected %d, got %d" % (len(expected_cases), len(actual_cases))
    for want, got in zip(expected_cases, actual_cases):
        for field in ("canonical_encoding_hex", "seed", "keys"):
            if want.get(field) != got.get(field):
                return "case %r field %s:\n  expected %s\n  got      %s\n  input %s" % (
                    want.get("name"), field, json.dumps(want.get(field)),
                    json.dumps(got.get(field)),
                    json.dumps({"descriptor": want["descriptor"], "tokens": want["tokens"]}))
    return None


def verify_file(path):
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    if vectors.get("format") != FORMAT:
        print("%s: format is %r, expected %r" % (path, vectors.get("format"), FORMAT))
        return False
    computed = [compute_case(c) for c in vectors["cases"]]
    # The stored file is the expectation: a mismatch means the spec or this file changed.
    mismatch = _first_mismatch(vectors["cases"], computed)
    if mismatch:
        print("%s: stored vectors disagree with the reference: %s" % (path, mismatch))
        return False
    print("%s: %d cases match" % (path, len(computed)))
    return True


def cross_check(binary, n, seed):
    cases = random_cases(n, seed)
    request = json.dumps({"format": FORMAT, "cases": cases})
    proc = subprocess.run([binary], input=request.encode("utf-8"), capture_output=True,
                          timeout=300)
    if proc.returncode != 0:
        print("%s exited with %d: %s" % (binary, proc.returncode,
                                          proc.stderr.decode(errors="replace")))
        return False
    actual = json.loads(proc.stdout)["cases"]
    expected = [compute_case(c) for c in cases]
    mismatch = _first_mismatch(expected, actual)
    if mismatch:
        print("%s disagrees with the Python reference (seed %d): %s" % (binary, seed, mismatch))
        return False
    total_keys = sum(len(c["keys"]) for c in expected)
    print("%s: %d random cases (%d keys, seed %d) match the Python reference" % (
        binary, n, total_keys, seed))
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-vectors", action="store_true",
                        help="print the canonical test vectors as JSON")
    parser.add_argument("--verify", metavar="FILE", help="check a vectors file")
    parser.add_argument("--cross-check", metavar="BIN", help="compare kvtier-keys on random cases")
    parser.add_argument("--cases", type=int, default=300, help="random cases for --cross-check")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed for --cross-check (default: a fresh one, printed)")
    args = parser.parse_args()
    if not (args.print_vectors or args.verify or args.cross_check):
        parser.print_usage(sys.stderr)
        return 2
    if args.print_vectors:
        sys.stdout.write(format_vectors(canonical_vectors()))
        return 0
    ok = True
    try:
        if args.verify:
            ok = verify_file(args.verify) and ok
        if args.cross_check:
            seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
            ok = cross_check(args.cross_check, args.cases, seed) and ok
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
