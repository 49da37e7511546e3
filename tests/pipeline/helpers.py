"""Pipelines over fake models and tasks whose answers a chosen model is known to get right."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from whetstone.data import examples_dir
from whetstone.models import LoglikelihoodRequest, load_model

WORDS = [
    "note",
    "sync",
    "folder",
    "share",
    "tag",
    "export",
    "vault",
    "backup",
    "plan",
    "invoice",
    "login",
    "device",
    "page",
]
# letters the fake model does not favour, so its preferences come from its seeded weights
LETTERS = "bcdfgkmpuvwy"


def oracle_mc_task(folder: Path, oracle: str, n: int = 40, name: str = "oracle_mc") -> Path:
    """A multiple-choice task whose gold answer is the choice `oracle` scores highest.

    `oracle` is then right on every item, and any other model only as often as it agrees.
    """
    rng = random.Random(0)
    items = []
    model = load_model(oracle)
    for i in range(n):
        question = " ".join(rng.choices(WORDS, k=5)) + "?"
        choices = ["".join(rng.choices(LETTERS, k=6)) for _ in range(4)]
        lls = [
            r.logprob
            for r in model.loglikelihood([LoglikelihoodRequest(question, " " + c) for c in choices])
        ]
        items.append(
            {"id": f"q{i}", "question": question, "choices": choices, "answer": int(np.argmax(lls))}
        )
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    task = folder / f"{name}.yaml"
    task.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "kind": "multiple_choice",
                "data": {"path": data.name, "id": "id"},
                "prompt": "{question}",
                "choices": "choices",
                "answer": "answer",
            }
        ),
        encoding="utf-8",
    )
    return task


def write_pipeline(folder: Path, **fields: Any) -> Path:
    """A pipeline file in `folder` with `fields` (defaults: fake model, the example suite)."""
    body: dict[str, Any] = {
        "name": "loop",
        "model": "fake",
        "tasks": [str(examples_dir() / "suite.yaml")],
        "limit": 12,
        "latency": {"items": 2, "warmup": 0},
        "workdir": "work",
    }
    body.update(fields)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path
