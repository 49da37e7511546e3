"""``audit()``: read the training data once, run every check, write audit.json and the page.

The training file is streamed: one pass computes the statistics, label counts, exact-duplicate
and MinHash band hashes, contamination lookups, PII and demographic counts, and keeps a seeded
reservoir sample (all records when there are at most ``sample_size``) for the model-based checks
(label issues, coverage, language); a second pass reads back only the near-duplicate candidates.
Each finished step is saved under ``DIR/.audit-partial/`` so ``resume=True`` continues an
interrupted audit without redoing it; the folder is removed when the audit is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from whetstone.audit import findings as F
from whetstone.audit.bias import BiasAccumulator
from whetstone.audit.config import AuditConfig, ColumnSpec, load_config
from whetstone.audit.contamination import ContaminationScanner, score_split
from whetstone.audit.coverage import cached_embed, coverage_section
from whetstone.audit.duplicates import DuplicateScanner, build_section
from whetstone.audit.files import atomic_write_text
from whetstone.audit.labels import LabelCounter, find_label_issues, label_shift
from whetstone.audit.loading import Dataset, Record
from whetstone.audit.pii import PIIScanner
from whetstone.audit.schema import (
    Audit,
    BiasSection,
    ContaminationSection,
    CoverageSection,
    DatasetInfo,
    DuplicateSection,
    LabelIssueSection,
    LabelSection,
    PIISection,
    StatsSection,
)
from whetstone.audit.stats import StatsAccumulator
from whetstone.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
DEFAULT_ENCODER = "all-MiniLM-L6-v2"


class AuditProgress(Protocol):
    """Receives progress of the audit's long steps."""

    def start(self, step: str, total: int | None) -> None:
        """A step begins (total units, if known)."""

    def advance(self, n: int) -> None:
        """n more units are done."""

    def done(self) -> None:
        """The step is finished."""


class NullProgress:
    """Progress that goes nowhere."""

    def start(self, step: str, total: int | None) -> None:
        """Ignore."""

    def advance(self, n: int) -> None:
        """Ignore."""

    def done(self) -> None:
        """Ignore."""


class SampleRow(BaseModel):
    """A record kept for the model-based checks."""

    id: str
    text: str
    label: str | None = None


class GroupIds(BaseModel):
    """Ids of the records that mention a group."""

    category: str
    group: str
    ids: list[str]


class ScanResult(BaseModel):
    """What the streaming pass over the training file produced (saved for resuming)."""

    n_records: int
    stats: StatsSection
    labels: LabelSection | None = None
    label_ids: dict[str, list[str]] = Field(default_factory=dict)
    duplicates: DuplicateSection | None = None
    contamination: list[ContaminationSection] = Field(default_factory=list)
    item_coverage: dict[str, dict[str, float]] = Field(default_factory=dict)
    pii: PIISection | None = None
    bias: BiasSection | None = None
    group_ids: list[GroupIds] = Field(default_factory=list)
    duplicate_ids: list[str] = Field(default_factory=list)
    long_records: list[tuple[str, int]] = Field(default_factory=list)
    by_language: dict[str, list[str]] = Field(default_factory=dict)
    sample: list[SampleRow] = Field(default_factory=list)
    sampled: bool = False


class Checkpoints:
    """Finished steps saved as JSON under ``DIR/.audit-partial/<audit id>/``."""

    def __init__(self, out_dir: Path | None, key: str, resume: bool) -> None:
        self.root = out_dir / ".audit-partial" if out_dir is not None else None
        self.dir = self.root / key if self.root is not None else None
        if self.root is not None and not resume and self.root.exists():
            shutil.rmtree(self.root)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def load(self, name: str, model: type[M]) -> M | None:
        """The saved result of a step, or None."""
        path = self.dir / f"{name}.json" if self.dir else None
        if path is None or not path.exists():
            return None
        return model.model_validate_json(path.read_text(encoding="utf-8"))

    def save(self, name: str, value: BaseModel) -> None:
        """Save a step's result."""
        if self.dir is not None:
            atomic_write_text(self.dir / f"{name}.json", value.model_dump_json())

    def clear(self) -> None:
        """Remove the saved steps (the audit is complete)."""
        if self.root is not None and self.root.exists():
            shutil.rmtree(self.root)


class _Reservoir:
    """A seeded uniform sample of at most ``size`` records (algorithm R)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.items: list[Record] = []
        self.seen = 0

    def add(self, records: Sequence[Record]) -> None:
        if self.size == 0:
            return
        for rec in records:
            self.seen += 1
            if len(self.items) < self.size:
                self.items.append(rec)
            else:
                j = int(self.rng.integers(0, self.seen))
                if j < self.size:
                    self.items[j] = rec

    def rows(self) -> list[SampleRow]:
        ordered = sorted(self.items, key=lambda r: r.row)
        return [SampleRow(id=r.id, text=r.text, label=r.label) for r in ordered]


def _resolve_config(
    config: AuditConfig | str | Path | None, columns: ColumnSpec | dict[str, Any] | None
) -> AuditConfig:
    if config is None:
        cfg = AuditConfig()
    elif isinstance(config, AuditConfig):
        cfg = config
    else:
        cfg = load_config(config)
    if columns is not None:
        spec = columns if isinstance(columns, ColumnSpec) else ColumnSpec.model_validate(columns)
        merged = {**cfg.columns.model_dump(exclude_none=True), **spec.model_dump(exclude_none=True)}
        cfg = cfg.model_copy(update={"columns": ColumnSpec.model_validate(merged)})
    return cfg


def _info(ds: Dataset, role: str, name: str, n: int) -> DatasetInfo:
    lay = ds.layout
    return DatasetInfo(
        role="train" if role == "train" else "eval",
        name=name,
        path=str(ds.path),
        format=ds.format,
        sha256=ds.sha256(),
        n_records=n,
        columns=lay.columns,
        mode="text" if lay.mode == "text" else "pair" if lay.mode == "pair" else "messages",
        text_fields=lay.text_fields,
        label_column=lay.label,
        id_column=lay.id,
    )


def _eval_names(paths: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        name = p.name
        while name in names:
            name = f"{name}#{len(names) + 1}"
        names.append(name)
    return names


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = round(timings.get(step, 0.0) + time.perf_counter() - start, 3)


def audit(
    train: str | Path,
    evals: Sequence[str | Path] = (),
    *,
    config: AuditConfig | str | Path | None = None,
    columns: ColumnSpec | dict[str, Any] | None = None,
    run: str | Path | None = None,
    run_task: str | None = None,
    metric: str | None = None,
    out_dir: str | Path | None = None,
    clean: bool = False,
    store: Any = None,
    resume: bool = False,
    progress: AuditProgress | None = None,
) -> Audit:
    """Audit a training file (against eval files) and return the ``Audit``.

    ``config``: an AuditConfig or a YAML path; ``columns`` overrides its column names. ``run``:
    an evaluation run (``--out`` folder, samples.jsonl or a stored run id) whose per-item
    ``metric`` is compared on clean and contaminated eval items. ``out_dir``: write audit.json,
    audit.html and (with ``clean``) the cleaned copy with weights. ``store``: a Store or URL to
    keep the audit as artifact ``("audit", audit_id)``.
    """
    cfg = _resolve_config(config, columns)
    prog = progress or NullProgress()
    out = Path(out_dir) if out_dir is not None else None
    if clean and out is None:
        raise ConfigError("a cleaned copy needs an output folder (out_dir / --out)")
    inputs = _Inputs.open(train, evals, cfg, run, store)
    checkpoints = Checkpoints(out, inputs.key, resume)
    timings: dict[str, float] = {}
    scan = checkpoints.load("scan", ScanResult)
    if scan is None:
        with _timed(timings, "scan"):
            scan = _scan(inputs.train, cfg, inputs.evals_named, prog)
        checkpoints.save("scan", scan)
    notes = inputs.notes(scan)
    sample = [Record(i, i + 1, r.id, r.text, r.label) for i, r in enumerate(scan.sample)]
    embed = _embedder(cfg)
    label_issues = _label_issues(cfg, sample, scan, checkpoints, timings, notes, prog, embed)
    coverage = _coverage(cfg, inputs.evals_named, sample, checkpoints, timings, prog, embed)
    if scan.labels is not None:
        scan.labels.shifts = [
            s
            for name, records in inputs.evals_named
            if (s := label_shift(scan.labels, name, [r.label for r in records])) is not None
        ]
    if inputs.run is not None:
        _score_contamination(cfg, scan, inputs.evals_named, inputs.run, run_task, metric, notes)
    result = inputs.assemble(scan, cfg, label_issues, coverage, notes, timings)
    if out is not None:
        _write(result, out, inputs.train, clean, prog, timings)
    if store is not None:
        _store(result, store, inputs.run[0] if inputs.run else None)
    checkpoints.clear()
    return result


class _Inputs:
    """The opened training and eval files and the evaluation run."""

    def __init__(
        self,
        train: Dataset,
        evals: list[Dataset],
        names: list[str],
        eval_chunks: list[Any],
        run: tuple[str, list[Any]] | None,
        cfg: AuditConfig,
    ) -> None:
        self.train = train
        self.evals = evals
        self.names = names
        self.eval_chunks = eval_chunks
        self.run = run
        self.evals_named = [(n, c.records) for n, c in zip(names, eval_chunks, strict=True)]
        self.key = _audit_id(cfg, train, evals, run[0] if run else None)

    @classmethod
    def open(
        cls,
        train: str | Path,
        evals: Sequence[str | Path],
        cfg: AuditConfig,
        run: str | Path | None,
        store: Any,
    ) -> _Inputs:
        """Check every input before any work: files, columns, the run."""
        train_ds = Dataset(train, cfg.columns, role="train", strict=cfg.strict)
        eval_ds = [Dataset(p, cfg.columns, role="eval", strict=cfg.strict) for p in evals]
        names = _eval_names([d.path for d in eval_ds])
        chunks = [d.load() for d in eval_ds]
        return cls(train_ds, eval_ds, names, chunks, _load_run(run, store), cfg)

    def notes(self, scan: ScanResult) -> list[str]:
        """What the reader should know about how the data was read and sampled."""
        notes = [
            f"{n}: {len(c.malformed)} malformed rows were left out"
            for n, c in zip(self.names, self.eval_chunks, strict=True)
            if c.malformed
        ]
        if scan.sampled:
            notes.append(
                f"label issues, coverage and language used a random sample of "
                f"{len(scan.sample)} of {scan.n_records} training records"
            )
        return notes

    def assemble(
        self,
        scan: ScanResult,
        cfg: AuditConfig,
        label_issues: LabelIssueSection | None,
        coverage: list[CoverageSection],
        notes: list[str],
        timings: dict[str, float],
    ) -> Audit:
        """The Audit with its findings and recommendations."""
        result = Audit(
            audit_id=self.key,
            created_at=datetime.now(UTC),
            train=_info(self.train, "train", self.train.name, scan.n_records),
            evals=[
                _info(d, "eval", n, len(c.records))
                for d, n, c in zip(self.evals, self.names, self.eval_chunks, strict=True)
            ],
            config=cfg,
            stats=scan.stats,
            labels=scan.labels,
            duplicates=scan.duplicates,
            label_issues=label_issues,
            contamination=scan.contamination,
            coverage=coverage,
            bias=scan.bias,
            pii=scan.pii,
            notes=notes,
            timings=timings,
        )
        result.findings = _findings(result, scan, cfg)
        result.recommendations = F.recommendations(result)
        return result


def _audit_id(
    cfg: AuditConfig, train: Dataset, evals: Sequence[Dataset], run_id: str | None
) -> str:
    """A content key: same config, same files, same run give the same id."""
    blob = json.dumps(
        {
            "config": cfg.model_dump(mode="json"),
            "train": train.sha256(),
            "evals": [d.sha256() for d in evals],
            "run": run_id,
        },
        sort_keys=True,
    )
    return "aud-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _load_run(run: str | Path | None, store: Any) -> tuple[str, list[Any]] | None:
    if run is None:
        return None
    from whetstone.audit.runs import load_run

    return load_run(run, store)


def _scan(
    ds: Dataset,
    cfg: AuditConfig,
    evals: Sequence[tuple[str, Sequence[Record]]],
    prog: AuditProgress,
) -> ScanResult:
    """The streaming pass (and the near-duplicate re-read)."""
    stats = StatsAccumulator(cfg.stats)
    labels = LabelCounter()
    dups = DuplicateScanner(cfg.duplicates) if cfg.duplicates.enabled else None
    cont = (
        ContaminationScanner(evals, cfg.contamination)
        if cfg.contamination.enabled and evals
        else None
    )
    pii = PIIScanner(cfg.pii.kinds) if cfg.pii.enabled else None
    bias = BiasAccumulator(cfg.bias) if cfg.bias.enabled else None
    # the model-based checks read a sample; without them none is kept
    sampled_checks = cfg.label_issues.enabled or cfg.coverage.enabled
    language = cfg.stats.enabled and cfg.stats.language_sample > 0
    reservoir = _Reservoir(cfg.sample_size if sampled_checks or language else 0, cfg.seed)
    ids: list[str] = []
    prog.start(f"reading {ds.name}", ds.count_rows() or None)
    for chunk in ds.chunks():
        recs = chunk.records
        stats.add(recs, chunk.malformed)
        if cfg.labels.enabled:
            labels.add(recs)
        if dups is not None:
            dups.add(recs)
        if cont is not None:
            cont.scan(recs, len(ids))
        if pii is not None:
            pii.add(recs)
        if bias is not None:
            bias.add(recs)
        reservoir.add(recs)
        ids.extend(r.id for r in recs)
        prog.advance(len(recs) + len(chunk.malformed))
    prog.done()
    if not ids:
        from whetstone.errors import DataError

        raise DataError(f"{ds.path}: no readable records ({len(stats.malformed)} malformed rows)")
    duplicates = None
    if dups is not None:
        prog.start("verifying near-duplicate candidates", None)
        duplicates = build_section(dups, lambda: (c.records for c in ds.chunks()))
        prog.done()
    sample_rows = reservoir.rows()
    sample = [Record(i, i, r.id, r.text, r.label) for i, r in enumerate(sample_rows)]
    stats_section, by_language = stats.section(
        sample if cfg.stats.enabled else [], ds.duplicate_ids, cfg.seed
    )
    contamination = cont.sections(ids) if cont is not None else []
    return ScanResult(
        n_records=len(ids),
        stats=stats_section,
        labels=labels.section(ds.layout.label or "label") if cfg.labels.enabled else None,
        label_ids=labels.ids,
        duplicates=duplicates,
        contamination=contamination,
        item_coverage={s.eval_name: cont.coverage_of(s) for s in contamination} if cont else {},
        pii=pii.section() if pii is not None else None,
        bias=bias.section() if bias is not None else None,
        group_ids=[
            GroupIds(category=c, group=g, ids=v)
            for (c, g), v in (bias.group_ids if bias else {}).items()
        ],
        duplicate_ids=ds.duplicate_ids,
        long_records=stats.long_outliers(stats_section.chars.median if stats_section.chars else 0),
        by_language=by_language,
        sample=sample_rows,
        sampled=0 < reservoir.size < len(ids),
    )


#: Sentence embeddings kept across audits in this process, by (encoder, text): audits of
#: several training files against the same eval sets (a pipeline) embed each text once.
_EMBEDDINGS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
EMBEDDINGS_KEPT = 50_000


def _embedder(cfg: AuditConfig) -> Callable[[list[str]], np.ndarray]:
    """The sentence encoder, remembering what it embedded: label issues and coverage embed the
    same training texts, and duplicate texts are embedded once."""
    encoder = cfg.coverage.encoder

    def embed(texts: list[str]) -> np.ndarray:
        from whetstone.embeddings import embed as encode

        name = encoder or DEFAULT_ENCODER
        missing = [t for t in dict.fromkeys(texts) if (name, t) not in _EMBEDDINGS]
        if missing:
            vectors = encode(missing, encoder=encoder)
            _EMBEDDINGS.update(((name, t), v) for t, v in zip(missing, vectors, strict=True))
        if not texts:
            return encode([], encoder=encoder)
        out = np.stack([_EMBEDDINGS[(name, t)] for t in texts])
        for t in texts:
            _EMBEDDINGS.move_to_end((name, t))
        while len(_EMBEDDINGS) > EMBEDDINGS_KEPT:
            _EMBEDDINGS.popitem(last=False)
        return out

    return embed


def _label_issues(
    cfg: AuditConfig,
    sample: list[Record],
    scan: ScanResult,
    checkpoints: Checkpoints,
    timings: dict[str, float],
    notes: list[str],
    prog: AuditProgress,
    embed: Callable[[list[str]], np.ndarray],
) -> LabelIssueSection | None:
    if not cfg.label_issues.enabled:
        return None
    if not any(r.label is not None for r in sample):
        notes.append("label issues skipped: no training record has a label")
        return None
    saved = checkpoints.load("label_issues", LabelIssueSection)
    if saved is not None:
        return saved
    with _timed(timings, "label_issues"):
        prog.start(f"label issues ({cfg.label_issues.folds}-fold out-of-fold predictions)", None)

        def embed_cached(texts: list[str]) -> np.ndarray:
            return cached_embed(texts, embed, checkpoints.dir, _encoder_name(cfg), prog.advance)

        section, why = find_label_issues(
            sample, cfg.label_issues, seed=cfg.seed, sampled=scan.sampled, embed=embed_cached
        )
        prog.done()
    if section is None:
        notes.append(f"label issues skipped: {why}")
        return None
    checkpoints.save("label_issues", section)
    return section


def _encoder_name(cfg: AuditConfig) -> str:
    return cfg.coverage.encoder or DEFAULT_ENCODER


def _coverage(
    cfg: AuditConfig,
    evals: Sequence[tuple[str, Sequence[Record]]],
    sample: list[Record],
    checkpoints: Checkpoints,
    timings: dict[str, float],
    prog: AuditProgress,
    embed: Callable[[list[str]], np.ndarray],
) -> list[CoverageSection]:
    if not cfg.coverage.enabled:
        return []
    out: list[CoverageSection] = []
    for i, (name, records) in enumerate(evals):
        saved = checkpoints.load(f"coverage-{i}", CoverageSection)
        if saved is not None:
            out.append(saved)
            continue
        with _timed(timings, "coverage"):
            total = min(len(sample), cfg.coverage.max_train) + min(
                len(records), cfg.coverage.max_eval
            )
            prog.start(f"embedding for coverage of {name}", total)
            section = coverage_section(
                name,
                records,
                sample,
                cfg.coverage,
                embed=embed,
                encoder_name=_encoder_name(cfg),
                seed=cfg.seed,
                cache_dir=checkpoints.dir,
                advance=prog.advance,
            )
            prog.done()
        if section is not None:
            checkpoints.save(f"coverage-{i}", section)
            out.append(section)
    return out


def _score_contamination(
    cfg: AuditConfig,
    scan: ScanResult,
    evals: Sequence[tuple[str, Sequence[Record]]],
    run: tuple[str, list[Any]],
    run_task: str | None,
    metric: str | None,
    notes: list[str],
) -> None:
    from whetstone.audit.runs import match_scores

    run_id, samples = run
    for section in scan.contamination:
        records = next(r for n, r in evals if n == section.eval_name)
        matched = match_scores(samples, [r.id for r in records], run_task, metric)
        if matched is None:  # the run numbered items by row (its task names no id column)
            by_row = {str(r.row): r.id for r in records}
            matched = match_scores(samples, list(by_row), run_task, metric)
            if matched is not None:
                task, chosen, values = matched
                matched = task, chosen, {by_row[k]: v for k, v in values.items()}
        if matched is None:
            notes.append(f"run {run_id}: no task shares item ids with {section.eval_name}")
            continue
        task, chosen, values = matched
        section.score = score_split(
            scan.item_coverage.get(section.eval_name, {}),
            values,
            cfg.contamination,
            run_id=run_id,
            task=task,
            metric=chosen,
            seed=cfg.seed,
        )


def _findings(result: Audit, scan: ScanResult, cfg: AuditConfig) -> list[Any]:
    out = F.FindingList()
    if cfg.stats.enabled and result.stats is not None:
        F.stats_findings(out, result.stats, scan.duplicate_ids, scan.long_records, scan.by_language)
    if result.labels is not None:
        F.label_findings(out, result.labels, scan.label_ids, cfg)
    if result.duplicates is not None:
        F.duplicate_findings(out, result.duplicates)
    if result.label_issues is not None:
        F.label_issue_findings(out, result.label_issues, cfg)
    for section in result.contamination:
        F.contamination_findings(out, section, cfg)
    for cov in result.coverage:
        F.coverage_findings(out, cov)
    if result.bias is not None:
        groups = {(g.category, g.group): g.ids for g in scan.group_ids}
        F.bias_findings(out, result.bias, groups, cfg)
    if result.pii is not None:
        F.pii_findings(out, result.pii)
    return F.sort_findings(out.items)


def _write(
    result: Audit,
    out: Path,
    train: Dataset,
    clean: bool,
    prog: AuditProgress,
    timings: dict[str, float],
) -> None:
    from whetstone.audit.html import render_page

    out.mkdir(parents=True, exist_ok=True)
    if clean:
        from whetstone.audit.clean import write_cleaned

        with _timed(timings, "clean"):
            prog.start("writing the cleaned copy", result.stats.n_rows if result.stats else None)
            result.outputs = write_cleaned(train, result, out, advance=prog.advance)
            prog.done()
    result.outputs.audit_json = str(out / "audit.json")
    result.outputs.html = str(out / "audit.html")
    atomic_write_text(out / "audit.html", render_page(result))
    atomic_write_text(out / "audit.json", result.model_dump_json(indent=1))


def _store(result: Audit, store: Any, run_id: str | None) -> None:
    from whetstone.store import Store

    db = store if isinstance(store, Store) else Store(str(store))
    refs = [result.train.path, *(e.path for e in result.evals)]
    if run_id:
        refs.append(f"run:{run_id}")
    db.put_artifact("audit", result.audit_id, result.model_dump(mode="json"), refs=refs)
