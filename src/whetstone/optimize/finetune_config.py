"""The `whetstone finetune` config file: pydantic models read from YAML; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from whetstone.metrics import canonical_name, direction
from whetstone.optimize.trials import Direction

TaskType = Literal["auto", "causal_lm", "classification"]


def default_direction(metric: str) -> Direction:
    """The metric registry's direction: ``minimize`` for perplexities, calibration errors,
    losses and costs, else ``maximize`` (unknown metrics too)."""
    return direction(metric)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainData(_Strict):
    """The training examples: the items of a whetstone task file.

    A perplexity task gives plain text (loss on every token); a generation, classification or
    multiple-choice task gives prompt/response pairs (the task's prompt, then the gold answer as
    a solved few-shot example shows it; loss on the response only), or, for a sequence
    classifier, texts with labels.
    """

    # a task (or suite) YAML file, relative to this config
    task: str
    # which task of a suite file (default: its only task)
    name: str | None = None
    # read the task's items from this data file instead (relative to this config), e.g. a
    # train split of the data the evaluation task reads; columns/id as the task's `data`
    path: str | None = None
    columns: list[str] | None = None
    id: str | None = None
    # skip the first N items, then use at most `limit`
    skip: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=1)
    # tokens per example (longer ones are cut; plain text is cut into blocks of this length)
    max_length: int = Field(default=256, ge=8)
    # append the end-of-sequence token to each response, so generation learns to stop
    append_eos: bool = True


class LoraSpec(_Strict):
    """Low-rank adapters (PEFT LoRA) instead of training every weight."""

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    # module names to adapt, or "all-linear" (every linear layer but the output head)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    # also keep the adapter alone (OUTPUT/adapter) besides the merged model
    save_adapter: bool = True


class TrainingSpec(_Strict):
    """Optimizer and schedule (transformers' TrainingArguments of the same names)."""

    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=16, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = 0
    logging_steps: int = Field(default=10, ge=1)
    # evaluations (and checkpoints) per epoch when there is something to evaluate
    evaluations_per_epoch: int = Field(default=1, ge=1)
    # checkpoints kept on disk: the best K by the early-stopping metric (else the newest K)
    keep_checkpoints: int = Field(default=2, ge=1)
    # float32 everywhere; bfloat16/float16 mixed precision on a GPU
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class EvalSpec(_Strict):
    """Task files the base and the fine-tuned model are evaluated on, paired item by item."""

    tasks: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0


class EarlyStoppingSpec(_Strict):
    """Stop when a whetstone task metric stops improving; keep the best model."""

    # a task of `eval.tasks` by name (default: the first)
    task: str | None = None
    # an alias is resolved through the metric registry (f1 -> f1_macro)
    metric: Annotated[str, AfterValidator(canonical_name)]
    # default: minimize perplexities, calibration errors and losses, maximize the rest
    direction: Direction | None = None
    # evaluations without improvement before training stops
    patience: int = Field(default=2, ge=1)
    # smallest change that counts as an improvement
    threshold: float = Field(default=0.0, ge=0)

    @property
    def resolved_direction(self) -> Direction:
        """The direction, or the metric's default."""
        return self.direction or default_direction(self.metric)


class FinetuneConfig(_Strict):
    """A whole `whetstone finetune` run."""

    # a Hugging Face folder (or hub id in the local cache), `default` (the embedded Gemma) or
    # `minilm` (the embedded all-MiniLM-L6-v2 encoder)
    model: str
    # causal_lm: next-token loss; classification: a sequence-classification head on the model.
    # auto: classification when the training task is one and the model is not a causal LM
    task: TaskType = "auto"
    data: TrainData
    # low-rank adapters; absent: every weight is trained
    lora: LoraSpec | None = None
    training: TrainingSpec = TrainingSpec()
    eval: EvalSpec = EvalSpec()
    early_stopping: EarlyStoppingSpec | None = None
    # the fine-tuned model is saved to OUTPUT_DIR/model, checkpoints to OUTPUT_DIR/checkpoints
    output_dir: str = "finetuned"
    # key of the stored result (default: the output folder's name)
    name: str | None = None
    # result store (default $WHETSTONE_DB or ./whetstone.db)
    db: str | None = None
    device: str = "auto"
    # folder of the config file: relative paths resolve against it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _early_stopping_needs_tasks(self) -> FinetuneConfig:
        if self.early_stopping is not None and not self.eval.tasks:
            raise ValueError("early_stopping needs eval.tasks to measure its metric on")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to its folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def run_name(self) -> str:
        """The key the result is stored under."""
        return self.name or Path(self.output_dir).name
