"""Hugging Face transformers backend: local folders, hub ids (offline cache) and GGUF files.

Scoring never materializes full-vocabulary logits for a whole batch: the decoder body runs on
the batch, the hidden states at the positions that predict target tokens are gathered, and the
LM head, log-softmax and gather run on those positions only, in chunks.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from whetstone.errors import ModelError, missing_extra
from whetstone.models.base import GenerationRequest, Progress, TokenLogprob
from whetstone.models.tokenized import ScoreWindow, TokenizedBackend, WindowScore, cut_at_stop
from whetstone.records import ModelIdentity

HEAD_CHUNK = 512
"""Positions per LM-head chunk: 512 x 262,144 float32 logits is 0.5 GB for Gemma 3."""

DEFAULT_TOKEN_BUDGET = {"cpu": 8192, "cuda": 65536}
"""Padded tokens per forward pass when no batch size is given."""

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "hf") from exc
    return torch


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
        self._head_only = self._check_head_path()
        dtype_name = str(self.torch_dtype).removeprefix("torch.")
        self.identity = ModelIdentity(
            backend="hf",
            name=name or self.source,
            hash=model_hash or self._hash(),
            dtype=dtype_name,
        )

    def _load(self) -> tuple[Any, Any]:
        torch = _torch()
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise missing_extra("transformers", "hf") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source)
            model = AutoModelForCausalLM.from_pretrained(self.source, dtype=self.torch_dtype)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"model '{self.source}': cannot load it as a transformers causal LM ({first})"
            ) from exc
        model.to(self.device).eval()
        torch.set_grad_enabled(False)
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

    def _body_and_head(self) -> tuple[Any, Any]:
        body = getattr(self.model, self.model.base_model_prefix, None)
        return body, self.model.get_output_embeddings()

    def _head_logits(self, hidden: Any) -> Any:
        logits = self._body_and_head()[1](hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = (logits / cap).tanh() * cap
        return logits

    def _check_head_path(self) -> bool:
        """True when body + LM head reproduce the model's own logits (else use full logits)."""
        torch = _torch()
        body, head = self._body_and_head()
        if body is None or head is None:
            return False
        ids = torch.tensor([self.encode("The quick brown fox jumps")], device=self.device)
        full = self.model(input_ids=ids).logits.float()
        ours = self._head_logits(body(input_ids=ids).last_hidden_state)
        return bool(torch.allclose(full, ours, atol=1e-3, rtol=1e-3))

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

    def score(
        self, windows: Sequence[ScoreWindow], progress: Progress | None = None
    ) -> list[WindowScore]:
        """Score windows in length-sorted batches; identical windows are scored once."""
        unique: dict[ScoreWindow, int] = {}
        for w in windows:
            unique.setdefault(w, len(unique))
        distinct = list(unique)
        order = sorted(range(len(distinct)), key=lambda i: -len(distinct[i].tokens))
        results: list[WindowScore | None] = [None] * len(distinct)
        for batch in self._batches(order, distinct):
            for i, s in zip(batch, self._score_batch([distinct[i] for i in batch]), strict=True):
                results[i] = s
            if progress:
                progress(len(batch))
        return [results[unique[w]] for w in windows]  # type: ignore[misc]

    def _score_batch(self, windows: Sequence[ScoreWindow]) -> list[WindowScore]:
        torch = _torch()
        torch.set_grad_enabled(False)  # grad mode is per thread: callers may be on another one
        inputs = [w.tokens[:-1] for w in windows]
        width = max(len(x) for x in inputs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(inputs), width), pad, dtype=torch.long)
        rows, cols, targets = [], [], []
        for b, (w, x) in enumerate(zip(windows, inputs, strict=True)):
            ids[b, : len(x)] = torch.tensor(x)
            start = len(x) - w.n_targets
            rows += [b] * w.n_targets
            cols += range(start, len(x))
            targets += w.tokens[-w.n_targets :]
        # Right padding needs no attention mask: under the causal mask a real token only sees
        # positions before it, never the pads after it; dropping the mask keeps the fast kernels.
        ids = ids.to(self.device)
        if self._head_only:
            hidden = self._body_and_head()[0](input_ids=ids).last_hidden_state
            selected = hidden[torch.tensor(rows), torch.tensor(cols)]
        else:
            selected = None
            logits_all = self.model(input_ids=ids).logits
        target_t = torch.tensor(targets, device=self.device)
        logprobs, greedy = [], []
        for lo in range(0, len(targets), HEAD_CHUNK):
            hi = min(lo + HEAD_CHUNK, len(targets))
            if selected is not None:
                logits = self._head_logits(selected[lo:hi])
            else:
                logits = logits_all[torch.tensor(rows[lo:hi]), torch.tensor(cols[lo:hi])].float()
            logp = torch.log_softmax(logits, dim=-1)
            logprobs.append(logp.gather(1, target_t[lo:hi, None])[:, 0].double())
            greedy.append(logits.argmax(dim=-1) == target_t[lo:hi])
        lp, gr = torch.cat(logprobs).cpu(), torch.cat(greedy).cpu()
        out, pos = [], 0
        for w in windows:
            out.append(
                WindowScore(float(lp[pos : pos + w.n_targets].sum()), bool(gr[pos : pos + w.n_targets].all()))
            )
            pos += w.n_targets
        return out

    def token_logprobs(self, ids: Sequence[int], top_k: int = 0) -> list[TokenLogprob]:
        """Log-probability of every token given those before it, with top-k alternatives."""
        torch = _torch()
        torch.set_grad_enabled(False)  # grad mode is per thread: callers may be on another one
        if not ids:
            return []
        out = [TokenLogprob(int(ids[0]), None)]
        if len(ids) == 1:
            return out
        # the last token is never input: max_length + 1 ids fit, as in `score`'s windows
        x = torch.tensor([list(ids[:-1])], device=self.device)
        logits_all = self.model(input_ids=x).logits[0]
        for lo in range(0, logits_all.shape[0], HEAD_CHUNK):
            logp = torch.log_softmax(logits_all[lo : lo + HEAD_CHUNK].float(), dim=-1)
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
            kwargs |= {"do_sample": True, "temperature": request.temperature, "top_p": request.top_p}
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
            groups.setdefault((r.max_new_tokens, r.stop, r.temperature, r.top_p, r.seed), []).append(i)
        size = self.batch_size or 8
        for idxs in groups.values():
            idxs.sort(key=lambda i: -len(requests[i].prompt))
            for lo in range(0, len(idxs), size):
                batch = idxs[lo : lo + size]
                first = requests[batch[0]]
                torch.manual_seed(first.seed)
                for i, text in zip(batch, self._generate_batch([requests[i] for i in batch]), strict=True):
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
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        ids = torch.tensor([self._prompt_ids(request.prompt, request.max_new_tokens)], device=self.device)
        torch.manual_seed(request.seed)
        kwargs = self._generate_kwargs(request) | {"input_ids": ids, "streamer": streamer}
        thread = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        text, emitted = "", 0
        for piece in streamer:
            text += piece
            cut, stopped = cut_at_stop(text, request.stop)
            if len(cut) > emitted:
                yield cut[emitted:]
                emitted = len(cut)
            if stopped:
                break
        thread.join()

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
