"""Plant known problems into real data: exact and near duplicates, label flips, eval items
copied into training, fake personal data and a removed topic. Each planted record is listed,
so a test can measure the recall and precision of the audit per kind."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from whetstone.audit.pii import luhn_valid


@dataclass
class Planted:
    """The planted records by kind (training ids, or eval ids for contamination/topic)."""

    exact: set[str] = field(default_factory=set)
    near: set[str] = field(default_factory=set)
    flips: set[str] = field(default_factory=set)
    contaminated: set[str] = field(default_factory=set)
    pii: set[str] = field(default_factory=set)
    topic_eval: set[str] = field(default_factory=set)
    topic_removed: int = 0
    # copy id -> the id of the record it copies (exact and near duplicates)
    sources: dict[str, str] = field(default_factory=dict)
    # every record the planting added
    inserted: set[str] = field(default_factory=set)


Row = dict[str, str]


def luhn_number(rng: random.Random, prefix: str = "4", length: int = 16) -> str:
    """A random card number with a valid Luhn check digit."""
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


def iban_de(rng: random.Random) -> str:
    """A random German IBAN with correct check digits (ISO 13616)."""
    bban = "".join(rng.choice("0123456789") for _ in range(18))
    digits = "".join(str(int(c, 36)) for c in bban + "DE00")
    check = 98 - int(digits) % 97
    return f"DE{check:02d}{bban}"


def fake_pii(rng: random.Random, i: int) -> str:
    """One piece of fake personal data, cycling through the kinds."""
    kind = i % 5
    if kind == 0:
        return f"write to {rng.choice(['anna', 'li', 'omar', 'jo'])}.{i}@example.org"
    if kind == 1:
        return f"call +1 (415) 555-{rng.randint(1000, 9999)}"
    if kind == 2:
        n = luhn_number(rng)
        return "card " + " ".join(n[j : j + 4] for j in range(0, 16, 4))
    if kind == 3:
        return f"IBAN {iban_de(rng)}"
    return f"from 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def near_copy(text: str, rng: random.Random) -> str:
    """The text with one word replaced, added or dropped."""
    words = text.split()
    j = rng.randrange(len(words))
    edit = rng.choice(["swap", "add", "drop"])
    if edit == "swap":
        words[j] = rng.choice(["new", "big", "major", "latest", "early"])
    elif edit == "add":
        words.insert(j, rng.choice(["reportedly", "also", "now", "still"]))
    else:
        del words[j]
    return " ".join(words)


def plant(
    train: list[Row],
    evals: list[Row],
    seed: int = 0,
    n: int = 40,
    flips: int = 60,
    topic: str | None = None,
    exclude_eval: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[Row], Planted]:
    """A copy of ``train`` (rows with "id", "text", "label") with every kind planted."""
    rng = random.Random(seed)
    labels = sorted({r["label"] for r in train})
    out = [dict(r) for r in train]
    planted = Planted()
    if topic is not None:
        pattern = re.compile(topic, re.IGNORECASE)
        kept = [r for r in out if not pattern.search(r["text"])]
        planted.topic_removed = len(out) - len(kept)
        out = kept
        planted.topic_eval = {r["id"] for r in evals if pattern.search(r["text"])}
    eligible = [i for i, r in enumerate(out) if len(r["text"]) >= 60]
    picks = rng.sample(eligible, 3 * n + flips)
    dup_src, near_src, pii_dst = picks[:n], picks[n : 2 * n], picks[2 * n : 3 * n]
    for i in picks[3 * n :]:
        row = out[i]
        row["label"] = rng.choice([lab for lab in labels if lab != row["label"]])
        planted.flips.add(row["id"])
    for k, i in enumerate(pii_dst):
        out[i]["text"] = f"{out[i]['text']} ({fake_pii(rng, k)})"
        planted.pii.add(out[i]["id"])
    additions: list[Row] = []
    for k, i in enumerate(dup_src):
        additions.append({**out[i], "id": f"dup-{k}"})
        planted.exact.add(f"dup-{k}")
        planted.sources[f"dup-{k}"] = out[i]["id"]
    for k, i in enumerate(near_src):
        additions.append({**out[i], "id": f"near-{k}", "text": near_copy(out[i]["text"], rng)})
        planted.near.add(f"near-{k}")
        planted.sources[f"near-{k}"] = out[i]["id"]
    candidates = [
        r
        for r in evals
        if r["id"] not in planted.topic_eval
        and r["id"] not in exclude_eval
        and len(r["text"].split()) >= 8
    ]
    for k, row in enumerate(rng.sample(candidates, n)):
        if k % 2:  # half inside a longer training text
            host = out[rng.randrange(len(out))]["text"]
            text = f"{host} {row['text']}"
        else:
            text = row["text"]
        additions.append({"id": f"copy-{k}", "text": text, "label": row["label"]})
        planted.contaminated.add(row["id"])
    for row in additions:
        out.insert(rng.randrange(len(out) + 1), row)
        planted.inserted.add(row["id"])
    return out, planted
