"""Findings (one per problem, with the records involved) and the recommendations they lead to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from whetstone.audit.config import AuditConfig
from whetstone.audit.schema import (
    SEVERITY_ORDER,
    Action,
    Audit,
    BiasSection,
    ContaminationSection,
    CoverageSection,
    DuplicateSection,
    Finding,
    FindingKind,
    LabelIssueSection,
    LabelSection,
    PIISection,
    Recommendation,
    Severity,
    StatsSection,
)

#: Record ids listed in a finding about a whole class or group (the full count is n_records).
MAX_IDS = 1000


class FindingList:
    """Findings numbered per kind as they are added."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._numbers: dict[str, int] = {}

    def add(
        self,
        kind: FindingKind,
        severity: Severity,
        title: str,
        action: Action,
        suggestion: str,
        record_ids: Iterable[str] = (),
        *,
        n_records: int | None = None,
        eval_set: str | None = None,
        eval_ids: Iterable[str] = (),
        **details: Any,
    ) -> None:
        """Append one finding."""
        number = self._numbers.get(kind, 0) + 1
        self._numbers[kind] = number
        ids = list(record_ids)
        self.items.append(
            Finding(
                id=f"{kind}-{number}",
                kind=kind,
                severity=severity,
                title=title,
                record_ids=ids[:MAX_IDS],
                n_records=len(ids) if n_records is None else n_records,
                eval_set=eval_set,
                eval_ids=list(eval_ids),
                action=action,
                suggestion=suggestion,
                details=details,
            )
        )


def stats_findings(
    out: FindingList,
    stats: StatsSection,
    duplicate_ids: list[str],
    long_records: list[tuple[str, int]],
    by_language: dict[str, list[str]],
) -> None:
    """Empty, malformed, duplicate-id, very long and other-language records."""
    if stats.empty_ids:
        out.add(
            "empty",
            "medium",
            f"{len(stats.empty_ids)} empty records (no text or no response)",
            "drop",
            "Drop them, or fill in the missing text.",
            stats.empty_ids,
        )
    for m in stats.malformed:
        out.add(
            "malformed",
            "medium",
            f"line {m.line}: {m.error}",
            "fix",
            "Fix the row; it was left out of every check.",
            [m.id],
            line=m.line,
        )
    if duplicate_ids:
        out.add(
            "duplicate_id",
            "medium",
            f"{len(duplicate_ids)} record ids occur more than once",
            "fix",
            "Give every record a unique id so findings point at one record.",
            sorted(set(duplicate_ids)),
        )
    median = stats.chars.median if stats.chars else 0.0
    for rid, n in long_records:
        out.add(
            "length_outlier",
            "low",
            f"record is {n:,} characters long ({n / max(median, 1):.0f}x the median)",
            "review",
            "Check for concatenated or garbage text.",
            [rid],
            chars=n,
        )
    if len(by_language) > 1 and stats.language_sample:
        main = next(iter(by_language))
        for lang, ids in list(by_language.items())[1:]:
            share = len(ids) / stats.language_sample
            if share >= 0.01 and len(ids) >= 2:
                out.add(
                    "language",
                    "low",
                    f"{share:.1%} of sampled records look {lang!r} (most are {main!r})",
                    "review",
                    "Keep them only if the model must handle that language; otherwise drop them.",
                    ids,
                    language=lang,
                    share=share,
                )


def label_findings(
    out: FindingList, labels: LabelSection, label_ids: dict[str, list[str]], cfg: AuditConfig
) -> None:
    """Missing labels, label spelling variants, imbalance, rare classes and eval label shift."""
    if labels.missing_ids:
        out.add(
            "missing_label",
            "medium",
            f"{len(labels.missing_ids)} records have no label",
            "relabel",
            "Label them or drop them.",
            labels.missing_ids,
        )
    for variants in labels.variants:
        ids = [i for v in variants for i in label_ids.get(v, [])]
        out.add(
            "label_variants",
            "medium",
            f"labels {', '.join(map(repr, variants))} differ only in spelling",
            "relabel",
            f"Merge them into one label ({variants[0]!r}).",
            ids,
            n_records=sum(c.count for c in labels.classes if c.label in variants),
            labels=variants,
        )
    ratio = labels.imbalance_ratio
    if ratio >= cfg.labels.imbalance_ratio and len(labels.classes) > 1:
        small = [
            c
            for c in labels.classes
            if c.count * cfg.labels.imbalance_ratio <= labels.classes[0].count
        ]
        ids = [i for c in small for i in label_ids.get(c.label, [])]
        out.add(
            "imbalance",
            "high" if ratio >= 10 else "medium",
            f"classes are imbalanced: the largest has {ratio:.1f}x the records of the smallest",
            "reweight",
            "Weight the loss by the class weights, or oversample the small classes to the largest.",
            ids,
            n_records=sum(c.count for c in small),
            class_weights=labels.class_weights,
            oversample_to=labels.oversample_to,
        )
    for c in labels.classes:
        if c.count < cfg.labels.min_class_count:
            out.add(
                "rare_class",
                "medium",
                f"class {c.label!r} has only {c.count} records",
                "add_data",
                "Add examples of this class, or merge it into a related one.",
                label_ids.get(c.label, []),
                n_records=c.count,
                label=c.label,
            )
    for shift in labels.shifts:
        if (shift.p_value < cfg.labels.alpha and shift.tvd >= 0.05) or shift.unseen_labels:
            out.add(
                "label_shift",
                "medium",
                f"labels in {shift.eval_name} are distributed "
                f"differently from training (TVD {shift.tvd:.2f}, p={shift.p_value:.2g})"
                + (
                    f"; unseen in training: {', '.join(shift.unseen_labels)}"
                    if shift.unseen_labels
                    else ""
                ),
                "reweight",
                "Reweight or resample training to the eval label mix, or check "
                "that the eval set reflects real use.",
                eval_set=shift.eval_name,
                eval_shares=shift.eval_shares,
                unseen=shift.unseen_labels,
            )


def duplicate_findings(out: FindingList, dups: DuplicateSection) -> None:
    """Exact and near duplicate groups, and duplicates whose labels disagree."""
    conflicted = {tuple(g.ids) for g in dups.conflicts}
    for g in dups.exact_groups:
        if tuple(g.ids) in conflicted:
            continue
        out.add(
            "exact_duplicate",
            "low",
            f"{len(g.ids)} records have the same text: {g.preview!r}",
            "drop",
            f"Keep {g.ids[0]}, drop the other copies.",
            g.ids,
            keep=g.ids[0],
        )
    for g in dups.near_groups:
        out.add(
            "near_duplicate",
            "low",
            f"{len(g.ids)} near-identical records (Jaccard >= {g.min_jaccard:.2f}): {g.preview!r}",
            "drop",
            f"Keep {g.ids[0]}; drop the others that carry the same label.",
            g.ids,
            keep=g.ids[0],
            min_jaccard=g.min_jaccard,
        )
    for g in dups.conflicts:
        labels = sorted({str(lab) for lab in g.labels})
        exact = g.kind == "exact"
        out.add(
            "label_conflict",
            "high" if exact else "medium",
            f"{'same' if exact else 'near-identical'} text with different labels "
            f"({', '.join(labels)}): {g.preview!r}",
            "relabel" if exact else "review",
            "Decide the right label and keep one record."
            if exact
            else "Check whether the small difference really changes the label.",
            g.ids,
            labels=[str(lab) for lab in g.labels],
            match=g.kind,
            jaccard=g.min_jaccard,
        )


def label_issue_findings(out: FindingList, section: LabelIssueSection, cfg: AuditConfig) -> None:
    """One finding per likely label error, worst first."""
    weak = section.oof_accuracy.value < section.majority_baseline + 0.05
    high_below = cfg.label_issues.high_severity_below
    for issue in section.issues:
        severity: Severity = (
            "low"
            if weak or issue.quality >= 3 * high_below
            else "high"
            if issue.quality < high_below
            else "medium"
        )
        out.add(
            "label_issue",
            severity,
            f"labeled {issue.given!r}, looks like {issue.suggested!r} (label quality "
            f"{issue.quality:.2f}): {issue.preview!r}",
            "relabel",
            f"Review the label; the classifier suggests {issue.suggested!r}.",
            [issue.id],
            given=issue.given,
            suggested=issue.suggested,
            quality=issue.quality,
        )


def contamination_findings(
    out: FindingList, section: ContaminationSection, cfg: AuditConfig
) -> None:
    """One finding per eval item with n-grams in the training data."""
    for item in section.items:
        if item.coverage < cfg.contamination.clean_below:
            continue
        full = item.coverage >= cfg.contamination.contaminated_at
        out.add(
            "contamination",
            "high" if full else "medium",
            f"{item.coverage:.0%} of eval item {item.eval_id} is in the training data: "
            f"{item.preview!r}",
            "drop",
            "Drop these training records, or leave the item out of the score.",
            item.train_ids,
            eval_set=section.eval_name,
            eval_ids=[item.eval_id],
            coverage=item.coverage,
            ngram=item.ngram,
        )


def coverage_findings(out: FindingList, section: CoverageSection) -> None:
    """Far eval items and gap topics."""
    for item in section.far_items:
        out.add(
            "coverage_gap",
            "low",
            f"eval item {item.eval_id} is far from all training data "
            f"(distance {item.distance:.3f} > {section.threshold:.3f}): {item.preview!r}",
            "add_data",
            "Add training examples like this item.",
            [item.nearest_train_id],
            eval_set=section.eval_name,
            eval_ids=[item.eval_id],
            distance=item.distance,
        )
    for t in section.topics:
        if not t.gap:
            continue
        ratio = "absent from training" if t.n_train == 0 else f"{t.ratio:.1f}x as common"
        out.add(
            "gap_topic",
            "medium",
            f"topic [{', '.join(t.terms)}] is {ratio} in "
            f"{section.eval_name} ({t.n_eval} items) as in training ({t.n_train})",
            "add_data",
            "Add training data on this topic, like these eval items.",
            eval_set=section.eval_name,
            eval_ids=t.eval_ids,
            terms=t.terms,
            eval_share=t.eval_share,
            train_share=t.train_share,
            q_value=t.q_value,
        )


def bias_findings(
    out: FindingList,
    bias: BiasSection,
    group_ids: dict[tuple[str, str], list[str]],
    cfg: AuditConfig,
) -> None:
    """Under-represented groups and significant group-label associations."""
    b = cfg.bias
    by_cat: dict[str, list[Any]] = {}
    for g in bias.groups:
        by_cat.setdefault(g.category, []).append(g)
    for category, groups in by_cat.items():
        seen = [g for g in groups if g.n_records > 0]
        total = sum(g.n_records for g in seen)
        if len(seen) < 2 or total < b.min_category_records:
            continue
        top = max(seen, key=lambda g: g.n_records)
        under = [g for g in seen if top.n_records >= b.representation_ratio * g.n_records]
        if not under:
            continue
        listed = ", ".join(f"'{g.group}' ({g.n_records})" for g in under[:6])
        if len(under) > 6:
            listed += f" and {len(under) - 6} more groups"
        out.add(
            "representation",
            "low",
            f"{category}: '{top.group}' appears in {top.n_records} records, "
            f"{b.representation_ratio:g}x or more than {listed}",
            "add_data",
            f"Add examples mentioning {', '.join(g.group for g in under)} if the model must "
            "serve them as well.",
            [i for g in under for i in group_ids.get((category, g.group), [])],
            n_records=sum(g.n_records for g in under),
            category=category,
            groups=[g.group for g in under],
            counts={g.group: g.n_records for g in seen},
        )
    for a in bias.label_associations:
        if (
            a.q_value is not None
            and a.q_value < b.alpha
            and abs(a.npmi) >= b.min_npmi
            and a.count >= b.min_count
            and a.npmi > 0
        ):
            ids = group_ids.get((a.category, a.group), [])
            out.add(
                "bias_association",
                "medium",
                f"records mentioning '{a.group}' "
                f"({a.category}) lean to label {a.target!r} (nPMI {a.npmi:+.2f}, "
                f"{a.count} records, q={a.q_value:.2g})",
                "review",
                "Check that the association is intended; add counter-examples otherwise.",
                ids,
                n_records=a.count,
                category=a.category,
                group=a.group,
                label=a.target,
                npmi=a.npmi,
            )


def pii_findings(out: FindingList, pii: PIISection) -> None:
    """One finding per record with personal data."""
    by_record: dict[str, list[Any]] = {}
    for m in pii.matches:
        by_record.setdefault(m.id, []).append(m)
    for rid, matches in by_record.items():
        kinds = sorted({m.kind for m in matches})
        severe = any(k in ("card", "iban") for k in kinds)
        out.add(
            "pii",
            "high" if severe else "medium",
            f"record {rid} contains {', '.join(kinds)}: {', '.join(m.masked for m in matches)}",
            "redact",
            "Redact or replace the personal data.",
            [rid],
            kinds=kinds,
        )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first; within a severity, in the order the checks ran."""
    return sorted(findings, key=lambda f: SEVERITY_ORDER[f.severity])


def recommendations(audit: Audit) -> list[Recommendation]:
    """Concrete changes to the training data, each tied to the findings behind it."""
    recs: list[Recommendation] = []
    dups = audit.duplicates
    if dups and dups.drop_ids:
        conflicted = {i for g in dups.conflicts if g.kind == "exact" for i in g.ids}
        exact = {i for g in dups.exact_groups for i in g.ids[1:]} - conflicted
        dropped = set(dups.drop_ids)
        n_conflict = len(dropped & conflicted)
        n_exact = len(dropped & exact)
        parts = [
            f"{n_exact} exact copies",
            f"{len(dropped) - n_exact - n_conflict} near "
            "duplicates of a kept record with the same label",
        ]
        if n_conflict:
            parts.append(f"{n_conflict} copies with conflicting labels")
        recs.append(
            Recommendation(
                action="drop",
                title=f"Drop {len(dups.drop_ids)} duplicate records",
                detail=", ".join(parts) + "; one record of each group stays.",
                n=len(dups.drop_ids),
                record_ids=dups.drop_ids,
                finding_kinds=["exact_duplicate", "near_duplicate", "label_conflict"],
            )
        )
    conflicts = audit.findings_of("label_conflict")
    if conflicts:
        ids = sorted({i for f in conflicts for i in f.record_ids})
        recs.append(
            Recommendation(
                action="relabel",
                title=f"Resolve {len(conflicts)} label conflicts",
                detail="The same or near-identical text carries different labels; pick one.",
                n=len(ids),
                record_ids=ids,
                finding_kinds=["label_conflict"],
            )
        )
    issues = audit.label_issues
    if issues and issues.issues:
        recs.append(
            Recommendation(
                action="relabel",
                title=f"Review {issues.n_issues} likely label errors",
                detail="Worst first; each finding carries the label the classifier suggests.",
                n=issues.n_issues,
                record_ids=[i.id for i in issues.issues],
                finding_kinds=["label_issue"],
            )
        )
    _contamination_recs(audit, recs)
    labels = audit.labels
    if labels and audit.findings_of("imbalance"):
        weights = ", ".join(f"{k}: {v:.3g}" for k, v in labels.class_weights.items())
        recs.append(
            Recommendation(
                action="reweight",
                title="Reweight the classes",
                detail=f"Class weights (balanced): {weights}; or oversample every class to "
                f"{labels.classes[0].count} records.",
                n=labels.n_labeled,
                finding_kinds=["imbalance"],
            )
        )
    _coverage_recs(audit, recs)
    pii = audit.findings_of("pii")
    if pii:
        ids = [f.record_ids[0] for f in pii]
        recs.append(
            Recommendation(
                action="redact",
                title=f"Redact personal data in {len(ids)} records",
                detail="E-mail addresses, phone numbers, card numbers, IBANs or IP addresses "
                "(the cleaned copy replaces them with placeholders).",
                n=len(ids),
                record_ids=ids,
                finding_kinds=["pii"],
            )
        )
    broken = audit.findings_of("empty") + audit.findings_of("malformed")
    if broken:
        ids = sorted({i for f in broken for i in f.record_ids})
        recs.append(
            Recommendation(
                action="fix",
                title=f"Fix or drop {len(ids)} empty or malformed records",
                detail="They were left out of the checks.",
                n=len(ids),
                record_ids=ids,
                finding_kinds=["empty", "malformed"],
            )
        )
    bias = audit.findings_of("representation") + audit.findings_of("bias_association")
    if bias:
        named = {f.details.get("group", "") for f in bias}
        named |= {g for f in bias for g in f.details.get("groups", [])}
        groups = sorted(named - {""})
        shown = ", ".join(groups[:8]) + (f" and {len(groups) - 8} more" if len(groups) > 8 else "")
        recs.append(
            Recommendation(
                action="add_data",
                title=f"Balance the representation of {shown}",
                detail="Add examples of under-represented groups and counter-examples to one-sided "
                "group-label associations.",
                n=len(bias),
                finding_kinds=sorted({f.kind for f in bias}),
            )
        )
    return recs


def _contamination_recs(audit: Audit, recs: list[Recommendation]) -> None:
    train_ids = sorted({i for s in audit.contamination for i in s.train_ids})
    eval_ids = [
        f"{s.eval_name}:{it.eval_id}"
        for s in audit.contamination
        for it in s.items
        if it.coverage >= audit.config.contamination.contaminated_at
    ]
    if not eval_ids:
        return
    recs.append(
        Recommendation(
            action="drop",
            title=f"Drop {len(train_ids)} training records that contain eval items",
            detail=f"{len(eval_ids)} eval items are contaminated (>= "
            f"{audit.config.contamination.contaminated_at:.0%} of their tokens in training "
            f"{audit.config.contamination.ngram}-grams); or report the score without them.",
            n=len(train_ids),
            record_ids=train_ids,
            eval_ids=eval_ids,
            finding_kinds=["contamination"],
        )
    )


def _coverage_recs(audit: Audit, recs: list[Recommendation]) -> None:
    for section in audit.coverage:
        gaps = [t for t in section.topics if t.gap]
        far = [f.eval_id for f in section.far_items]
        if not gaps and not far:
            continue
        topics = "; ".join(f"[{', '.join(t.terms[:4])}]" for t in gaps[:5])
        eval_ids = sorted({*far, *(i for t in gaps for i in t.eval_ids)})
        recs.append(
            Recommendation(
                action="add_data",
                title=f"Add training data like {len(eval_ids)} eval items of {section.eval_name}",
                detail=(f"Topics rare in training: {topics}. " if topics else "")
                + f"{len(far)} items are farther from training than "
                f"{section.quantile:.0%} of training examples are from each other.",
                n=len(eval_ids),
                eval_ids=eval_ids,
                finding_kinds=[k for k, on in (("gap_topic", gaps), ("coverage_gap", far)) if on],
            )
        )
