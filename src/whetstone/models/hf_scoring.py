"""Scoring kernels of the transformers backend: where the speed and the memory are.

- Only positions that predict a target token reach the LM head, in passes of many positions
  over blocks of the vocabulary, and the head's log-softmax is fused with the gather (target
  logit minus an online log-sum-exp), so full-vocabulary logits never exist for a batch.
- Windows that share a context (the choices of a multiple-choice question, the labels of a
  classification item) run the context once; every continuation is scored from its cached
  keys and values.
- Batches are padded on the right and need no attention mask: under the causal mask a real
  token sees only positions before it, never the pads after it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from whetstone.models.banded_attention import right_padded_scoring
from whetstone.models.onednn_linear import linear
from whetstone.models.tokenized import ScoreWindow, WindowScore

HEAD_CHUNK_BYTES = {"cpu": 128 << 20, "cuda": 1 << 30}
"""Float32 logits held at once where whole vocabulary rows are needed (top-k alternatives):
128 positions of Gemma 3's 262,144-word vocabulary on a CPU."""

CPU_HEAD_SHAPE = (1024, 4096)
"""Positions per LM-head pass and vocabulary columns per block on a CPU. A 16 MB block stays in
cache from the matmul through the log-sum-exp, which makes the head about 1.8x faster than
whole-vocabulary rows; a GPU takes whole rows, as many as `HEAD_CHUNK_BYTES` allows."""


def head_chunk(vocab_size: int, device: str) -> int:
    """Positions of whole-vocabulary logits held at once on this device."""
    budget = HEAD_CHUNK_BYTES["cuda" if device.startswith("cuda") else "cpu"]
    return max(16, budget // (4 * vocab_size))


def head_shape(vocab_size: int, device: str) -> tuple[int, int]:
    """Positions per LM-head pass and vocabulary columns per block on this device."""
    if device.startswith("cuda"):
        return head_chunk(vocab_size, device), vocab_size
    positions, block = CPU_HEAD_SHAPE
    return positions, min(block, vocab_size)


LogitBlocks = Callable[[torch.Tensor], Iterator[tuple[int, torch.Tensor]]]
"""Hidden states -> (first word id, float32 logits of a block of the vocabulary), block after
block; a block may be overwritten by the next one."""


class VocabHead:
    """An LM head (weight, optional bias and final soft-capping) applied a vocabulary block at
    a time."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        softcap: float | None = None,
        block: int = 4096,
    ) -> None:
        self.weight, self.bias, self.softcap, self.block = weight, bias, softcap, block

    def blocks(self, hidden: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Float32 logits of `hidden`, `block` vocabulary columns at a time."""
        for lo in range(0, self.weight.shape[0], self.block):
            bias = None if self.bias is None else self.bias[lo : lo + self.block]
            logits = linear(hidden, self.weight[lo : lo + self.block], bias).float()
            if self.softcap:
                logits.div_(self.softcap).tanh_().mul_(self.softcap)
            yield lo, logits

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Whole-vocabulary float32 logits (for checks on short inputs)."""
        return torch.cat([block for _, block in self.blocks(hidden)], dim=1)


def logits_as_blocks(logits: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Logits a body already computed, as one block (a float32 copy, free to overwrite)."""
    yield 0, logits.to(torch.float32, copy=True)


@dataclass(frozen=True)
class Scorer:
    """The pieces of a model that scoring calls: decoder body, LM head and its pass size."""

    body: Callable[..., Any]
    head: LogitBlocks
    positions: int
    pad: int
    device: str


def head_scores(
    head: LogitBlocks, hidden: torch.Tensor, targets: torch.Tensor, positions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target and whether it is the argmax, `positions` at a time."""
    logprobs, greedy = [], []
    for lo in range(0, targets.shape[0], positions):
        t = targets[lo : lo + positions]
        lp, best = _fused_log_softmax(head, hidden[lo : lo + positions], t)
        logprobs.append(lp)
        greedy.append(best == t)
    return torch.cat(logprobs).cpu(), torch.cat(greedy).cpu()


def _fused_log_softmax(
    head: LogitBlocks, hidden: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target log-probabilities and argmax ids by an online log-sum-exp over vocabulary blocks.

    Each block gives up the target logits it holds and its row maxima before it is turned in
    place into exp(logits - running max); the running sum is rescaled when the maximum grows.
    """
    n = targets.shape[0]
    top = torch.full((n,), float("-inf"), device=hidden.device)
    total = torch.zeros(n, device=hidden.device)
    picked = torch.zeros(n, device=hidden.device)
    best = torch.zeros(n, dtype=torch.long, device=hidden.device)
    for start, logits in head(hidden):
        width = logits.shape[1]
        inside = (targets >= start) & (targets < start + width)
        at = (targets - start).clamp(0, width - 1)
        picked = torch.where(inside, logits.gather(1, at[:, None])[:, 0], picked)
        block_top, block_best = logits.max(dim=-1)
        best = torch.where(block_top > top, block_best + start, best)  # first maximum wins
        new_top = torch.maximum(top, block_top)
        total.mul_((top - new_top).exp())
        total.add_(logits.sub_(new_top[:, None]).exp_().sum(dim=-1))
        top = new_top
    return (picked - top - total.log()).double(), best


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


States = tuple[torch.Tensor, torch.Tensor]
"""Hidden states at the positions that predict target tokens, and those targets."""


def batch_states(m: Scorer, windows: Sequence[ScoreWindow]) -> States:
    """Independent windows in one right-padded forward pass, up to the LM head."""
    inputs = [w.tokens[:-1] for w in windows]
    rows: list[int] = []
    cols: list[int] = []
    targets: list[int] = []
    for b, (w, x) in enumerate(zip(windows, inputs, strict=True)):
        rows += [b] * w.n_targets
        cols += range(len(x) - w.n_targets, len(x))
        targets += w.tokens[-w.n_targets :]
    with right_padded_scoring():
        hidden = m.body(input_ids=_right_padded(inputs, m.pad, m.device)).last_hidden_state
    selected = hidden[torch.tensor(rows), torch.tensor(cols)]
    return selected, torch.tensor(targets, device=m.device)


def score_batch(m: Scorer, windows: Sequence[ScoreWindow]) -> list[WindowScore]:
    """Score independent windows in one right-padded forward pass."""
    lp, greedy = head_scores(m.head, *batch_states(m, windows), m.positions)
    return _sum_per_window(windows, lp, greedy)


class HeadQueue:
    """Hidden states waiting for the LM head, which runs once a full pass of positions has
    gathered: the few positions of a multiple-choice batch would leave its matmuls half idle."""

    def __init__(self, m: Scorer) -> None:
        self.m = m
        self.waiting: list[tuple[States, Sequence[ScoreWindow], Callable[..., None]]] = []
        self.size = 0

    def put(
        self,
        states: States,
        windows: Sequence[ScoreWindow],
        done: Callable[[list[WindowScore]], None],
    ) -> None:
        """Queue the states of `windows`; `done` gets their scores when the head has run."""
        self.waiting.append((states, windows, done))
        self.size += states[1].shape[0]
        if self.size >= self.m.positions:
            self.flush()

    def flush(self) -> None:
        """Run the head on everything queued."""
        if not self.waiting:
            return
        hidden = torch.cat([h for (h, _), _, _ in self.waiting])
        targets = torch.cat([t for (_, t), _, _ in self.waiting])
        lp, greedy = head_scores(self.m.head, hidden, targets, self.m.positions)
        pos = 0
        for (_, t), windows, done in self.waiting:
            n = t.shape[0]
            done(_sum_per_window(windows, lp[pos : pos + n], greedy[pos : pos + n]))
            pos += n
        self.waiting, self.size = [], 0


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
    """Score groups of windows where each group starts with one shared context (see
    `shared_context_states`); results are flat, group after group, window after window."""
    lp, greedy = head_scores(m.head, *shared_context_states(m, groups), m.positions)
    return _sum_per_window([w for _, ws in groups for w in ws], lp, greedy)


def shared_context_states(
    m: Scorer, groups: Sequence[tuple[Sequence[int], Sequence[ScoreWindow]]]
) -> States:
    """Groups of windows where each group starts with one shared context, up to the LM head.

    The contexts run once (right-padded together), then every continuation runs on a copy of
    its context's key/value cache (`body` takes it as `cache=`). With several groups the
    continuation pass masks the pads between a short context and its continuation and gives
    each row its true positions. States are flat, group after group, window after window.
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
    return torch.cat(parts), torch.tensor(targets, device=m.device)


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
    share one that pays to run once, and the indices of the other windows.

    A context pays when it is at least as long as its windows' continuations on average (the
    question before its answer choices), not when it is a lone BOS before whole documents:
    those would only make one huge continuation pass.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w.tokens[: -w.n_targets], []).append(i)
    shared = {
        ctx: idx
        for ctx, idx in groups.items()
        if len(idx) > 1 and len(ctx) * len(idx) >= sum(windows[i].n_targets for i in idx)
    }
    alone = [i for ctx, idx in groups.items() if ctx not in shared for i in idx]
    return shared, alone
