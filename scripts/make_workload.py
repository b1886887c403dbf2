"""Build the demo's support-bot workload from Banking77 (CC BY 4.0).

The seed brief's scenario: a customer-support bot where ~70% of queries are repeats or
rewordings of ~20 common questions and the rest are unique. This script draws that mix
from real customer queries (Banking77's train split, Casanueva et al. 2020, CC BY 4.0) and
writes ``src/deja/data/demo_workload.jsonl``, one labelled request a line:

    {"i": 0, "text": "...", "intent": "card_arrival", "kind": "repeat", "group": 3}

``kind``: ``repeat`` (the common question's usual wording), ``rewording`` (another
customer's wording of the same question), ``unique`` (asked once). ``group`` names the
common question (0-19), null for unique ones. Deterministic (fixed seed); the output is
committed, so the demo needs nothing but the package.

    python scripts/make_workload.py [--banking77 ../shared/data/banking77/train.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "deja" / "data" / "demo_workload.jsonl"
TOTAL, COMMON_SHARE, GROUPS, REWORDINGS = 500, 0.7, 20, 4
REPEAT_SHARE = 0.55


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--banking77", type=Path, default=ROOT.parent / "shared/data/banking77/train.csv"
    )
    args = parser.parse_args()
    rng = random.Random(77)
    by_intent: dict[str, list[str]] = defaultdict(list)
    with args.banking77.open(newline="") as f:
        for row in csv.DictReader(f):
            text = " ".join(row["text"].split())
            if 4 <= len(text.split()) <= 25:
                by_intent[row["category"]].append(text)
    intents = sorted(by_intent)
    common = rng.sample(intents, GROUPS)
    others = [i for i in intents if i not in common]
    groups = []
    for intent in common:
        texts = rng.sample(sorted(set(by_intent[intent])), 1 + REWORDINGS)
        groups.append((intent, texts[0], texts[1:]))
    # Zipf-like popularity: a few questions dominate, as in real support traffic
    weights = [1 / (rank + 1) ** 0.8 for rank in range(GROUPS)]
    n_common = round(TOTAL * COMMON_SHARE)
    requests = []
    for _ in range(n_common):
        g = rng.choices(range(GROUPS), weights)[0]
        intent, canonical, rewordings = groups[g]
        if rng.random() < REPEAT_SHARE:
            requests.append({"text": canonical, "intent": intent, "kind": "repeat", "group": g})
        else:
            requests.append(
                {"text": rng.choice(rewordings), "intent": intent, "kind": "rewording", "group": g}
            )
    pool = sorted({(t, i) for i in others for t in by_intent[i]})
    for text, intent in rng.sample(pool, TOTAL - n_common):
        requests.append({"text": text, "intent": intent, "kind": "unique", "group": None})
    rng.shuffle(requests)
    with OUT.open("w") as f:
        for i, r in enumerate(requests):
            f.write(json.dumps({"i": i, **r}, ensure_ascii=False) + "\n")
    print(f"wrote {len(requests)} requests to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
