"""Diagnosis false positives: random perturbations of correct gradients must never get a *specific*
pattern (a cause), only None or a location pattern naming tensors that really were changed.

Run on demand (about 50 s on 2 cores)::

    python3 benchmarks/diagnose_false_positives.py [--seeds 15] [--trials 300]

For five correct networks (tanh MLP float64 and float32, a square 4-4-4-4 net, softmax
cross-entropy, a wide net whose deltas X determines), each trial perturbs a random subset of the
claimed gradient (multiplicative noise, additive noise, replacement, one element, shuffling; sizes
1e-8 to 2 relative; and a named ratio -1, 2, 1/2, N or 1/N blurred by 1% to 2 relative noise, which
the per-tensor rules must not read as that ratio), re-compares it with the checker's metric and
calls ``diagnose`` with the spec, params and X exactly as ``check`` does. Prints the pattern counts,
every specific claim and how many RuntimeWarnings diagnose let out; exits 1 unless both are 0.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gradcheck.diagnose import LOCATION_PATTERNS, diagnose
from tests.diagnose_support import KINDS, PERTURBATIONS, base_check, perturb, random_subset, with_claimed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=15)
    ap.add_argument("--trials", type=int, default=300)
    args = ap.parse_args(argv)
    counts: collections.Counter = collections.Counter()
    bad = []
    leaked = 0
    for kind in KINDS:
        base, params, X = base_check(kind)
        names = list(base.tensors)
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 + seed)
            for trial in range(args.trials):
                subset = random_subset(names, rng)
                how = PERTURBATIONS[trial % len(PERTURBATIONS)]
                delta = float(10 ** rng.uniform(-5, 0.3))
                claimed = {k: base.tensors[k].claimed.copy() for k in names}
                perturb(claimed, subset, how, delta, rng, batch=int(base.spec["batch"]))
                r = with_claimed(base, claimed)
                if r.passed:
                    continue
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    d = diagnose(r, base.spec, params=params, X=X)
                leaked += sum(issubclass(w.category, RuntimeWarning) for w in caught)
                counts[d.pattern if d else "none"] += 1
                if d and (d.pattern not in LOCATION_PATTERNS or not set(d.params) <= set(subset)):
                    bad.append((kind, how, subset, f"{delta:.2g}", d.pattern, d.message[:120]))
    total = sum(counts.values())
    print(f"failing perturbations: {total}; specific (or misplaced) claims: {len(bad)}; "
          f"RuntimeWarnings leaked by diagnose: {leaked}")
    for pattern, n in counts.most_common():
        print(f"  {pattern:26s} {n:6d}  {n / total:6.1%}")
    for b in bad[:20]:
        print("  BAD", *b)
    return 1 if bad or leaked else 0


if __name__ == "__main__":
    sys.exit(main())
