"""A small deterministic model for fast tests: a byte-level bigram model with seeded weights.

It has real log-probabilities (rows of a softmax table), so every metric, the server and the
HTTP client can be exercised end to end in milliseconds without torch.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterator, Sequence

import numpy as np

from whetstone.models.base import GenerationRequest, Progress, TokenLogprob
from whetstone.models.tokenized import ScoreWindow, StopFilter, TokenizedBackend, WindowScore
from whetstone.records import ModelIdentity

BOS = 256
EOS = 257
VOCAB = 258


class FakeModel(TokenizedBackend):
    """Byte-level bigram language model; `seed` picks the weights, `bias` favours some bytes.

    `delay` (seconds per scored window or generated text) simulates a slow model or server.
    With ``WHETSTONE_FAKE_STALL=SEED:N`` in the environment the model of that seed blocks for
    good after scoring N windows, so a test can interrupt a run at a known point without
    racing a clock.
    """

    def __init__(
        self, seed: int = 0, max_length: int = 2048, bias: str = " etaoinshr", delay: float = 0.0
    ) -> None:
        self.seed = seed
        self.delay = delay
        self.bias = bias
        self._max_length = max_length
        rng = np.random.default_rng(seed)
        logits = rng.normal(0.0, 1.0, size=(VOCAB, VOCAB))
        for ch in bias.encode():
            logits[:, ch] += 2.0
        logits -= np.logaddexp.reduce(logits, axis=1, keepdims=True)
        self.logprobs_: np.ndarray = logits
        digest = hashlib.sha256(f"fake:{seed}:{bias}".encode()).hexdigest()[:16]
        self.identity = ModelIdentity(backend="fake", name=f"fake-{seed}", hash=digest)
        stall_seed, _, stall_after = os.environ.get("WHETSTONE_FAKE_STALL", "").partition(":")
        self.stall_after = int(stall_after) if stall_seed == str(seed) else None
        self.scored = 0

    @property
    def max_length(self) -> int:
        """Longest sequence accepted."""
        return self._max_length

    @property
    def prefix_token_id(self) -> int:
        """The BOS token."""
        return BOS

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """UTF-8 bytes, after BOS when `add_special_tokens`."""
        ids = list(text.encode("utf-8"))
        return [BOS, *ids] if add_special_tokens else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of byte tokens; special tokens are dropped."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def score(
        self, windows: Sequence[ScoreWindow], progress: Progress | None = None
    ) -> list[WindowScore]:
        """Sum of bigram log-probabilities over each window's targets."""
        out = []
        for w in windows:
            if self.stall_after is not None and self.scored >= self.stall_after:
                while True:  # until the test stops the process
                    time.sleep(0.05)
            self.scored += 1
            if self.delay:
                time.sleep(self.delay)
            toks = np.asarray(w.tokens)
            prev, nxt = toks[-w.n_targets - 1 : -1], toks[-w.n_targets :]
            rows = self.logprobs_[prev]
            greedy = bool(np.all(rows.argmax(axis=1) == nxt))
            out.append(WindowScore(float(rows[np.arange(len(nxt)), nxt].sum()), greedy))
            if progress:
                progress(1)
        return out

    def token_logprobs(self, ids: Sequence[int], top_k: int = 0) -> list[TokenLogprob]:
        """Per-token log-probabilities and top-k alternatives (none for the first token)."""
        out = [TokenLogprob(ids[0], None)] if ids else []
        for prev, tok in itertools.pairwise(ids):
            row = self.logprobs_[prev]
            top = {int(j): float(row[j]) for j in np.argsort(-row)[:top_k]}
            out.append(TokenLogprob(tok, float(row[tok]), top))
        return out

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Generate byte by byte: greedy at temperature 0, else seeded sampling."""
        if self.delay:
            time.sleep(self.delay)
        rng = np.random.default_rng(request.seed)
        prev = self.encode(request.prompt)[-1]
        out = StopFilter(request.stop)
        pending: list[int] = []
        for _ in range(request.max_new_tokens):
            row = self.logprobs_[prev]
            if request.temperature > 0:
                p = np.exp(row / request.temperature)
                prev = int(rng.choice(VOCAB, p=p / p.sum()))
            else:
                prev = int(row.argmax())
            if prev == EOS:
                break
            pending.append(prev)
            piece = self.decode(pending)
            if "\ufffd" in piece and len(pending) < 4:
                continue  # an incomplete UTF-8 sequence: wait for its remaining bytes
            pending = []
            if ready := out.push(piece):
                yield ready
            if out.stopped:
                return
        # the budget or EOS: the held-back tail and the bytes of an unfinished UTF-8 sequence
        if tail := out.push(self.decode(pending)) + out.flush():
            yield tail
