"""The `whetstone distill` and `whetstone quantize` config files: pydantic models read from YAML
(unknown keys are errors naming the file, line and field).

The training data, schedule and evaluation sections are the fine-tuning config's own
(`whetstone.optimize.finetune_config`), so a fine-tuning file's sections carry over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from whetstone.optimize.finetune_config import EvalSpec, TaskType, TrainData, TrainingSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudentSpec(_Strict):
    """Where the student comes from; exactly one of `layers`, `keep`, `config`, `model`."""

    # keep this many of the teacher's layers, evenly spread, first and last included
    layers: int | None = Field(default=None, ge=1)
    # keep exactly these teacher layers (0-based), in this order
    keep: list[int] | None = None
    # a fresh, randomly initialized model: the teacher's config with these fields changed
    config: dict[str, Any] | None = None
    # an existing (smaller) model sharing the teacher's vocabulary: a folder, .gguf or default
    model: str | None = None
    # with layers/keep: take the layers from this model instead of the teacher, e.g. the
    # teacher's pre-trained base before fine-tuning (a classifier head it lacks is new)
    init: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> StudentSpec:
        given = [k for k in ("layers", "keep", "config", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise ValueError(f"expected exactly one of layers, keep, config, model{got}")
        if self.keep is not None and (not self.keep or min(self.keep) < 0):
            raise ValueError("keep: expected a non-empty list of layer indices >= 0")
        if self.init is not None and self.layers is None and self.keep is None:
            raise ValueError("init goes with layers or keep (the layers it gives)")
        return self


class LossSpec(_Strict):
    """How the student learns from the teacher (see whetstone.optimize.distill_losses)."""

    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    temperature: float = Field(default=2.0, gt=0)
    # weight of the soft (teacher) term; 1 - alpha goes to the hard-label loss
    alpha: float = Field(default=0.5, ge=0, le=1)
    # generalized JSD interpolation: 0 is forward KL, 1 is reverse KL
    beta: float = Field(default=0.5, ge=0, le=1)
    # weight of the hidden-state cosine loss (applies when teacher and student widths agree)
    hidden_weight: float = Field(default=0.0, ge=0)


class DistillTraining(TrainingSpec):
    """The fine-tuning schedule, plus what distillation adds."""

    # freeze the token embeddings (and a tied LM head): large vocabularies train much faster
    freeze_embeddings: bool = False
    # checkpoint every N optimizer steps, so a killed run resumes there (0: none)
    save_steps: int = Field(default=0, ge=0)


class SpeedSpec(_Strict):
    """How CPU latency and throughput are measured (see whetstone.optimize.distill_measure)."""

    # tokens per measured input (a real training example, cut or repeated to this length)
    seq_len: int = Field(default=128, ge=2)
    latency_runs: int = Field(default=20, ge=1)
    throughput_batch: int = Field(default=32, ge=1)
    throughput_runs: int = Field(default=3, ge=1)
    # torch threads while measuring (default: torch's own)
    threads: int | None = Field(default=None, ge=1)
    # skip the measurement altogether
    enabled: bool = True


class DistillConfig(_Strict):
    """A whole `whetstone distill` run."""

    # any local whetstone model: a Hugging Face folder, a .gguf file, `default` or `minilm`
    teacher: str
    student: StudentSpec
    data: TrainData
    # causal_lm or classification; auto: from the teacher's architecture
    task: TaskType = "auto"
    # offline: cache the teacher's top-k log-probabilities once and train from the cache;
    # online: run the teacher on every batch (full distributions)
    mode: Literal["offline", "online"] = "offline"
    # tokens kept per position in the offline cache (causal LMs; classifiers keep every label)
    top_k: int = Field(default=64, ge=1)
    loss: LossSpec = LossSpec()
    training: DistillTraining = DistillTraining()
    eval: EvalSpec = EvalSpec()
    speed: SpeedSpec = SpeedSpec()
    # also train the same student without the teacher (hard labels only) and report the gain
    ablation: bool = False
    # also quantize the student to dynamic int8 and report it
    quantize: bool = False
    # the student is saved to OUTPUT_DIR/student (the ablation to OUTPUT_DIR/ablation)
    output_dir: str = "distilled"
    # key of the stored result (default: the output folder's name)
    name: str | None = None
    # the offline teacher cache (default: $WHETSTONE_CACHE/distill, shared by runs and trials)
    cache_dir: str | None = None
    # result store (default $WHETSTONE_DB or ./whetstone.db)
    db: str | None = None
    device: str = "auto"
    # folder of the config file: relative paths resolve against it
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to its folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def run_name(self) -> str:
        """The key the result is stored under."""
        return self.name or Path(self.output_dir).name


class QuantizeConfig(_Strict):
    """A `whetstone quantize` run: dynamic int8 quantization of a local model, and its report."""

    model: str
    task: TaskType = "auto"
    # keep these submodules (by dotted-name suffix) in float; a causal LM's head always stays
    skip: list[str] = Field(default_factory=list)
    # a training-style task whose first examples give the real input for the speed probe
    # (default: the first evaluation task's items)
    eval: EvalSpec = EvalSpec()
    speed: SpeedSpec = SpeedSpec()
    output_dir: str = "quantized"
    name: str | None = None
    db: str | None = None
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to its folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def run_name(self) -> str:
        """The key the result is stored under."""
        return self.name or Path(self.output_dir).name
