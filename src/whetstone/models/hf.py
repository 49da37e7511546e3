"""Hugging Face transformers backend: local folders, hub ids (offline cache) and GGUF files.

Scoring never materializes full-vocabulary logits for a whole batch: the decoder body runs on
the batch, the hidden states at the positions that predict target tokens are gathered, and the
LM head, log-softmax and gather run on those positions only, by blocks of the vocabulary.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from whetstone.errors import ModelError, missing_extra
from whetstone.models import banded_attention, heap, onednn_linear
from whetstone.models.base import GenerationRequest, Progress, TokenLogprob
from whetstone.models.hf_scoring import (
    HeadQueue,
    Scorer,
    VocabHead,
    batch_states,
    cache_kwarg,
    head_chunk,
    head_shape,
    logits_as_blocks,
    score_batch,
    score_shared_contexts,
    shared_context_states,
    shared_contexts,
)
from whetstone.models.tokenized import (
    ScoreWindow,
    StopFilter,
    TokenizedBackend,
    WindowScore,
    cut_at_stop,
)
from whetstone.records import ModelIdentity

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TOKEN_BUDGET = {"cpu": 8192, "cuda": 65536}
"""Padded tokens per forward pass when no batch size is given."""

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "hf") from exc
    return torch


def _inference(method: F) -> F:
    """Run a method without autograd, whatever thread calls it, leaving grad mode as it was."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _torch().inference_mode():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def resolve_device(device: str) -> str:
    """`auto` becomes cuda when a GPU is visible, else cpu."""
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: no CUDA device is visible")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """`auto` is bfloat16 on a GPU that supports it and float32 elsewhere."""
    torch = _torch()
    if dtype not in DTYPES:
        raise ModelError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if dtype == "auto":
        gpu_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 else torch.float32
    return getattr(torch, dtype)


def weights_hash(folder: Path) -> str:
    """sha256 over the config and weight files of a model folder (names and contents)."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".json", ".model"}
    )
    for p in files:
        digest.update(p.name.encode())
        with p.open("rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def _stop_when_set(event: threading.Event) -> Any:
    """A transformers stopping criterion that ends generation once `event` is set."""
    torch = _torch()
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StopWhenSet()


class _LogitsAsHidden:
    """A model output whose logits stand in for hidden states on the plain path."""

    def __init__(self, output: Any) -> None:
        self.last_hidden_state = output.logits
        self.past_key_values = getattr(output, "past_key_values", None)


class HFModel(TokenizedBackend):
    """A causal LM loaded with transformers; `source` is a folder or a hub id in the cache."""

    def __init__(
        self,
        source: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | None = None,
        max_length: int | None = None,
        name: str | None = None,
        model_hash: str | None = None,
    ) -> None:
        self.source = str(source)
        self.device = resolve_device(device)
        self.torch_dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.tokenizer, self.model = self._load()
        self._max_length = max_length or self._default_max_length()
        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        positions, block = head_shape(vocab, self.device)
        self._vocab_head = self._make_head(block)
        self._chunk = head_chunk(vocab, self.device)
        self._scorer = Scorer(
            body=self._body,
            head=self._head_blocks,
            positions=positions,
            pad=self.tokenizer.pad_token_id or 0,
            device=self.device,
        )
        self._head_only = False
        self._head_only, self._share_prefix = self._check_fast_paths()
        dtype_name = str(self.torch_dtype).removeprefix("torch.")
        self.identity = ModelIdentity(
            backend="hf",
            name=name or self.source,
            hash=model_hash or self._hash(),
            dtype=dtype_name,
            window=max_length,
        )

    def _load(self) -> tuple[Any, Any]:
        _torch()  # the clear missing-extra message comes before transformers' own
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise missing_extra("transformers", "hf") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source)
            heap.collect()
            model = AutoModelForCausalLM.from_pretrained(self.source, dtype=self.torch_dtype)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"model '{self.source}': cannot load it as a transformers causal LM ({first})"
            ) from exc
        model.to(self.device).eval()  # type: ignore[arg-type]
        banded_attention.install(model)
        onednn_linear.install(model)
        return tokenizer, model

    def _default_max_length(self) -> int:
        # the rule of lm-evaluation-harness's resolve_max_length, so defaults agree
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(self.model.config, attr, None)
            if value:
                return int(value)
        model_max = getattr(self.tokenizer, "model_max_length", None)
        return int(model_max) if model_max and model_max < 10**9 else 2048

    def _hash(self) -> str:
        folder = Path(self.source)
        if not folder.is_dir():
            folder = Path(getattr(self.model.config, "_name_or_path", self.source))
        return weights_hash(folder)[:16] if folder.is_dir() else self.source

    @property
    def max_length(self) -> int:
        """Longest sequence scored in one window."""
        return self._max_length

    @property
    def prefix_token_id(self) -> int:
        """BOS, else EOS, as lm-evaluation-harness's `prefix_token_id`."""
        tok = self.tokenizer
        return int(tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids; with `add_special_tokens` the tokenizer's own default special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids without special tokens."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    # -- scoring -------------------------------------------------------------------------

    def _body(self, **kwargs: Any) -> Any:
        """The decoder without its LM head (or the whole model, whose logits then serve)."""
        module = (
            getattr(self.model, self.model.base_model_prefix) if self._head_only else self.model
        )
        if "cache" in kwargs:
            kwargs[cache_kwarg(module)] = kwargs.pop("cache")
        out = module(**kwargs)
        return out if self._head_only else _LogitsAsHidden(out)

    def _make_head(self, block: int) -> VocabHead:
        out = self.model.get_output_embeddings()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return VocabHead(out.weight, getattr(out, "bias", None), cap, block)

    def _head_blocks(self, hidden: Any) -> Iterator[tuple[int, Any]]:
        """Float32 logits from hidden states, by vocabulary blocks (the logits themselves,
        when the body already gave logits)."""
        if self._head_only:
            return self._vocab_head.blocks(hidden)
        return logits_as_blocks(hidden)

    @_inference
    def _check_fast_paths(self) -> tuple[bool, bool]:
        """Whether body + LM head, and a shared key/value cache, reproduce the model's logits.

        Checked once on a short input, so an architecture with extra logit scaling or without
        a usable cache falls back to the plain (slower, still exact) path, never to wrong numbers.
        """
        torch = _torch()
        ids = self.encode("The quick brown fox jumps over the lazy dog")
        x = torch.tensor([ids], device=self.device)
        full = self.model(input_ids=x).logits.float()[0]
        base = getattr(self.model, self.model.base_model_prefix, None)
        if base is None or self.model.get_output_embeddings() is None:
            return False, False
        self._head_only = True
        ours = self._vocab_head.logits(base(input_ids=x).last_hidden_state[0])
        if not torch.allclose(full, ours, atol=1e-3, rtol=1e-3):
            self._head_only = False
            return False, False
        windows = [
            ScoreWindow(tuple(ids[:k]), k - c)
            for c, k in ((3, len(ids) - 1), (3, len(ids)), (5, len(ids)), (5, len(ids) - 2))
        ]
        plain = score_batch(self._scorer, windows)
        groups = [(tuple(ids[:3]), windows[:2]), (tuple(ids[:5]), windows[2:])]
        try:
            shared = score_shared_contexts(self._scorer, groups)
            shared += score_shared_contexts(self._scorer, groups[:1])
        except (TypeError, ValueError, AttributeError, RuntimeError, NotImplementedError):
            return True, False
        same = all(
            abs(a.logprob - b.logprob) < 1e-3
            for a, b in zip(plain + plain[:2], shared, strict=True)
        )
        return True, same

    def _batches(self, order: list[int], windows: Sequence[ScoreWindow]) -> Iterator[list[int]]:
        """Windows sorted longest first, grouped by count or by a padded-token budget."""
        if self.batch_size:
            for i in range(0, len(order), self.batch_size):
                yield order[i : i + self.batch_size]
            return
        budget = DEFAULT_TOKEN_BUDGET["cuda" if self.device.startswith("cuda") else "cpu"]
        batch: list[int] = []
        for i in order:
            longest = len(windows[batch[0]].tokens) if batch else len(windows[i].tokens)
            if batch and longest * (len(batch) + 1) > budget:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _group_batches(
        self, groups: list[tuple[tuple[int, ...], list[int]]], windows: Sequence[ScoreWindow]
    ) -> Iterator[list[tuple[tuple[int, ...], list[int]]]]:
        """Shared-context groups, longest context first, packed by count or token budget.

        Contexts padded together must fit the model's sliding attention window, since the
        window is counted in cache slots, pads included; longer ones go one group at a time.
        """
        limit = getattr(self.model.config, "sliding_window", None) or 10**9
        budget = DEFAULT_TOKEN_BUDGET["cuda" if self.device.startswith("cuda") else "cpu"]
        batch: list[tuple[tuple[int, ...], list[int]]] = []
        width = rest = count = 0
        for ctx, idx in groups:
            need_rest = max(len(windows[i].tokens) - len(ctx) for i in idx)
            new_width, new_rest = max(width, len(ctx)), max(rest, need_rest)
            new_count = count + len(idx)
            too_big = (
                len(batch) >= self.batch_size
                if self.batch_size
                else new_width * (len(batch) + 1) + new_rest * new_count > budget
            )
            if batch and (too_big or new_width + new_rest > limit):
                yield batch
                batch, new_width, new_rest, new_count = [], len(ctx), need_rest, len(idx)
            batch.append((ctx, idx))
            width, rest, count = new_width, new_rest, new_count
        if batch:
            yield batch

    @_inference
    def score(
        self, windows: Sequence[ScoreWindow], progress: Progress | None = None
    ) -> list[WindowScore]:
        """Score windows: shared contexts run once, the rest in length-sorted batches.

        Identical windows are scored once. Results do not depend on the batch size.
        """
        unique: dict[ScoreWindow, int] = {}
        for w in windows:
            unique.setdefault(w, len(unique))
        distinct = list(unique)
        results: list[WindowScore | None] = [None] * len(distinct)
        if self._share_prefix:
            shared, alone = shared_contexts(distinct)
        else:
            shared, alone = {}, list(range(len(distinct)))
        queue = HeadQueue(self._scorer)

        def done(rows: list[int]) -> Callable[[list[WindowScore]], None]:
            def record(scores: list[WindowScore]) -> None:
                for i, s in zip(rows, scores, strict=True):
                    results[i] = s
                if progress:
                    progress(len(rows))

            return record

        for batch in self._group_batches(
            sorted(shared.items(), key=lambda kv: -len(kv[0])), distinct
        ):
            groups = [(ctx, [distinct[i] for i in idx]) for ctx, idx in batch]
            flat = [i for _, idx in batch for i in idx]
            states = shared_context_states(self._scorer, groups)
            queue.put(states, [distinct[i] for i in flat], done(flat))
        alone.sort(key=lambda i: -len(distinct[i].tokens))
        for rows in self._batches(alone, distinct):
            chosen = [distinct[i] for i in rows]
            queue.put(batch_states(self._scorer, chosen), chosen, done(rows))
        queue.flush()
        return [results[unique[w]] for w in windows]  # type: ignore[misc]

    @_inference
    def token_logprobs(self, ids: Sequence[int], top_k: int = 0) -> list[TokenLogprob]:
        """Log-probability of every token given those before it, with top-k alternatives."""
        torch = _torch()
        if not ids:
            return []
        out = [TokenLogprob(int(ids[0]), None)]
        if len(ids) == 1:
            return out
        # the last token is never input: max_length + 1 ids fit, as in `score`'s windows
        x = torch.tensor([list(ids[:-1])], device=self.device)
        with banded_attention.right_padded_scoring():
            logits_all = self.model(input_ids=x).logits[0]
        for lo in range(0, logits_all.shape[0], self._chunk):
            logp = torch.log_softmax(logits_all[lo : lo + self._chunk].float(), dim=-1)
            top_v, top_i = logp.topk(top_k, dim=-1) if top_k else (None, None)
            for j in range(logp.shape[0]):
                tok = int(ids[lo + j + 1])
                top = {}
                if top_i is not None and top_v is not None:
                    top = dict(zip(top_i[j].tolist(), top_v[j].tolist(), strict=True))
                out.append(TokenLogprob(tok, float(logp[j, tok]), top))
        return out

    # -- generation ----------------------------------------------------------------------

    def _generate_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if request.temperature > 0:
            kwargs |= {
                "do_sample": True,
                "temperature": request.temperature,
                "top_p": request.top_p,
            }
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if request.stop:
            kwargs |= {"stop_strings": list(request.stop), "tokenizer": self.tokenizer}
        return kwargs

    def _prompt_ids(self, prompt: str, max_new_tokens: int) -> list[int]:
        return self.encode(prompt)[-max(1, self.max_length - max_new_tokens) :]

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """Generate in batches of requests that share settings, left-padded, longest first."""
        torch = _torch()
        outputs: dict[int, str] = {}
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(
                (r.max_new_tokens, r.stop, r.temperature, r.top_p, r.seed), []
            ).append(i)
        size = self.batch_size or 8
        for idxs in groups.values():
            idxs.sort(key=lambda i: -len(requests[i].prompt))
            for lo in range(0, len(idxs), size):
                batch = idxs[lo : lo + size]
                first = requests[batch[0]]
                torch.manual_seed(first.seed)
                for i, text in zip(
                    batch, self._generate_batch([requests[i] for i in batch]), strict=True
                ):
                    outputs[i] = cut_at_stop(text, requests[i].stop)[0]
                if progress:
                    progress(len(batch))
        return [outputs[i] for i in range(len(requests))]

    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[str]:
        torch = _torch()
        prompts = [self._prompt_ids(r.prompt, r.max_new_tokens) for r in requests]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) :] = torch.tensor(p)
            mask[b, width - len(p) :] = 1
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            **self._generate_kwargs(requests[0]),
        )
        return [self.decode(row[width:].tolist()) for row in out]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield text as it is generated (transformers' TextIteratorStreamer in a thread)."""
        torch = _torch()
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        done = threading.Event()
        ids = torch.tensor(
            [self._prompt_ids(request.prompt, request.max_new_tokens)], device=self.device
        )
        torch.manual_seed(request.seed)
        kwargs = self._generate_kwargs(request) | {
            "input_ids": ids,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_stop_when_set(done)]),
        }
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the reading thread below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        out = StopFilter(request.stop)
        for piece in streamer:
            if ready := out.push(piece):
                yield ready
            if out.stopped:
                done.set()  # end generation early, then let the streamer run out
                for _ in streamer:
                    pass
                break
        else:
            if not failure and (tail := out.flush()):
                yield tail
        thread.join()
        if failure:
            raise failure[0]

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The tokenizer's chat template applied to `messages` (else a plain transcript)."""
        if not self.has_chat_template:
            return super().chat_prompt(messages)
        text = self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        bos = self.tokenizer.bos_token
        # encode() adds BOS itself; keep it from appearing twice
        return str(text).removeprefix(bos) if bos else str(text)

    def close(self) -> None:
        """Drop the weights and free accelerator memory."""
        torch = _torch()
        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
