"""Scoring kernels of the transformers backend: where the speed and the memory are.

- Only positions that predict a target token reach the LM head, in chunks, and the head's
  log-softmax is fused with the gather (target logit minus logsumexp), so full-vocabulary
  logits never exist for a whole batch.
- Windows that share a context (the choices of a multiple-choice question, the labels of a
  classification item) run the context once; every continuation is scored from its cached
  keys and values.
- Batches are padded on the right and need no attention mask: under the causal mask a real
  token sees only positions before it, never the pads after it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from whetstone.models.tokenized import ScoreWindow, WindowScore

HEAD_CHUNK_BYTES = {"cpu": 128 << 20, "cuda": 1 << 30}
"""Float32 logits held at once per LM-head chunk: 128 positions of Gemma 3's 262,144-word
vocabulary on a CPU (256 cost the same CPU time and 0.15-0.3 GB more peak memory)."""


def head_chunk(vocab_size: int, device: str) -> int:
    """Positions per LM-head chunk on this device for this vocabulary."""
    budget = HEAD_CHUNK_BYTES["cuda" if device.startswith("cuda") else "cpu"]
    return max(16, budget // (4 * vocab_size))


Head = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Scorer:
    """The pieces of a model that scoring calls: decoder body, LM head and its chunk size."""

    body: Callable[..., Any]
    head: Head
    chunk: int
    pad: int
    device: str


def head_scores(
    head: Head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target and whether it is the argmax, `chunk` positions at once.

    One logits buffer per chunk and nothing else of its size: the target logit is gathered and
    the row maximum taken (with its index, for greediness) before the buffer is turned in place
    into exp(logits - max) for the log-sum-exp.
    """
    logprobs, greedy = [], []
    for lo in range(0, targets.shape[0], chunk):
        logits = head(hidden[lo : lo + chunk])
        t = targets[lo : lo + chunk]
        picked = logits.gather(1, t[:, None])[:, 0]
        top, best = logits.max(dim=-1)
        logits.sub_(top[:, None]).exp_()
        logprobs.append((picked - top - logits.sum(dim=-1).log()).double())
        greedy.append(best == t)
        del logits  # before the next chunk's buffer exists, not after
    return torch.cat(logprobs).cpu(), torch.cat(greedy).cpu()


def _sum_per_window(
    windows: Sequence[ScoreWindow], lp: torch.Tensor, greedy: torch.Tensor
) -> list[WindowScore]:
    out, pos = [], 0
    for w in windows:
        n = w.n_targets
        out.append(WindowScore(float(lp[pos : pos + n].sum()), bool(greedy[pos : pos + n].all())))
        pos += n
    return out


def _right_padded(rows: Sequence[Sequence[int]], pad: int, device: str) -> torch.Tensor:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids.to(device)


def score_batch(m: Scorer, windows: Sequence[ScoreWindow]) -> list[WindowScore]:
    """Score independent windows in one right-padded forward pass."""
    inputs = [w.tokens[:-1] for w in windows]
    rows: list[int] = []
    cols: list[int] = []
    targets: list[int] = []
    for b, (w, x) in enumerate(zip(windows, inputs, strict=True)):
        rows += [b] * w.n_targets
        cols += range(len(x) - w.n_targets, len(x))
        targets += w.tokens[-w.n_targets :]
    hidden = m.body(input_ids=_right_padded(inputs, m.pad, m.device)).last_hidden_state
    selected = hidden[torch.tensor(rows), torch.tensor(cols)]
    lp, greedy = head_scores(m.head, selected, torch.tensor(targets, device=m.device), m.chunk)
    return _sum_per_window(windows, lp, greedy)


def cache_kwarg(module: Any) -> str:
    """The name under which this transformers version takes a key/value cache."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def score_shared_contexts(
    m: Scorer, groups: Sequence[tuple[Sequence[int], Sequence[ScoreWindow]]]
) -> list[WindowScore]:
    """Score groups of windows where each group starts with one shared context.

    The contexts run once (right-padded together), then every continuation runs on a copy of
    its context's key/value cache (`body` takes it as `cache=`). With several groups the
    continuation pass masks the pads between a short context and its continuation and gives
    each row its true positions. Results are flat, group after group, window after window.
    """
    contexts = [list(c) for c, _ in groups]
    lengths = torch.tensor([len(c) for c in contexts])
    ctx_ids = _right_padded(contexts, m.pad, m.device)
    out = m.body(input_ids=ctx_ids, use_cache=True)
    first = out.last_hidden_state[torch.arange(len(contexts)), lengths - 1]
    windows = [w for _, ws in groups for w in ws]
    owner = [g for g, (_, ws) in enumerate(groups) for _ in ws]
    rests = [w.tokens[len(contexts[g]) : -1] for g, w in zip(owner, windows, strict=True)]
    later = _continuations(m, out, ctx_ids.shape[1], lengths, owner, rests, len(groups) > 1)
    parts = []
    for i, g in enumerate(owner):
        parts.append(first[g][None])
        if i in later:
            parts.append(later[i])
    targets = [t for g, w in zip(owner, windows, strict=True) for t in w.tokens[len(contexts[g]) :]]
    lp, greedy = head_scores(
        m.head, torch.cat(parts), torch.tensor(targets, device=m.device), m.chunk
    )
    return _sum_per_window(windows, lp, greedy)


def _length_buckets(order: list[int], rests: Sequence[Sequence[int]]) -> list[list[int]]:
    """Windows sorted by continuation length, cut where padding to the longest would waste
    more than about a third of a pass."""
    buckets: list[list[int]] = []
    for i in order:
        if buckets and len(rests[i]) <= 1.5 * len(rests[buckets[-1][0]]) + 2:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def _continuations(
    m: Scorer,
    out: Any,
    width: int,
    lengths: torch.Tensor,
    owner: list[int],
    rests: Sequence[Sequence[int]],
    masked: bool,
) -> dict[int, torch.Tensor]:
    """Hidden states of every window's continuation (all but its last token), run on copies
    of its context's cache, in passes of similar lengths so little goes to padding."""
    base = _output_cache(out)
    order = sorted((i for i, r in enumerate(rests) if r), key=lambda i: len(rests[i]))
    buckets = _length_buckets(order, rests)
    later: dict[int, torch.Tensor] = {}
    for n, bucket in enumerate(buckets):
        cache = base if n == len(buckets) - 1 else copy.deepcopy(base)
        rows = [owner[i] for i in bucket]
        cache.batch_select_indices(torch.tensor(rows, device=m.device))
        ids = _right_padded([rests[i] for i in bucket], m.pad, m.device)
        kwargs: dict[str, Any] = {"cache": cache}
        if masked:
            own_len = lengths[rows][:, None]
            mask = torch.ones((len(bucket), width + ids.shape[1]), dtype=torch.long)
            mask[:, :width] = torch.arange(width)[None, :] < own_len
            positions = own_len + torch.arange(ids.shape[1])[None, :]
            kwargs |= {"attention_mask": mask.to(m.device), "position_ids": positions.to(m.device)}
        hidden = m.body(input_ids=ids, **kwargs).last_hidden_state
        for row, i in enumerate(bucket):
            later[i] = hidden[row, : len(rests[i])]
    return later


def shared_contexts(
    windows: Sequence[ScoreWindow],
) -> tuple[dict[tuple[int, ...], list[int]], list[int]]:
    """Windows grouped by their context (all tokens before the targets) where two or more
    share one, and the indices of the windows that share with none."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w.tokens[: -w.n_targets], []).append(i)
    shared = {ctx: idx for ctx, idx in groups.items() if len(idx) > 1 and ctx}
    alone = [i for ctx, idx in groups.items() if ctx not in shared for i in idx]
    return shared, alone
