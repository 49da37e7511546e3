"""`whetstone audit` end to end on the shipped example data: exactly the planted problems, the
outputs (audit.json, audit.html, cleaned copy, weights, stored artifact), errors and resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whetstone.audit import Audit, audit, render_html_section
from whetstone.cli.main import app
from whetstone.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "whetstone" / "data" / "examples"
TRAIN = EXAMPLES / "intents_train.jsonl"
EVAL = EXAMPLES / "support_intents.jsonl"
# What intents_train.jsonl was built with (besides 150 ordinary support messages).
PLANTED_EXACT = [["tk-1009", "tk-1101"], ["tk-1084", "tk-1097"]]
PLANTED_CONFLICT = ["tk-1079", "tk-1123"]
PLANTED_NEAR = [["tk-1043", "tk-1110"], ["tk-1104", "tk-1109"]]
PLANTED_PII = {"tk-1144": ["email"], "tk-1158": ["phone"]}
PLANTED_CONTAMINATION = {"msg-027": "tk-1103", "msg-053": "tk-1114", "msg-091": "tk-1117"}
PLANTED_FLIP = "tk-1081"

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args])
    return result.exit_code, result.output


def check_planted(result: Audit) -> None:
    """Exactly the planted duplicates, conflict, PII and contamination are found."""
    dups = result.duplicates
    assert dups is not None
    assert sorted(g.ids for g in dups.exact_groups) == sorted([*PLANTED_EXACT, PLANTED_CONFLICT])
    assert sorted(g.ids for g in dups.near_groups) == PLANTED_NEAR
    assert [g.ids for g in dups.conflicts] == [PLANTED_CONFLICT]
    assert sorted(dups.drop_ids) == sorted(
        ["tk-1101", "tk-1097", "tk-1110", "tk-1109", *PLANTED_CONFLICT]
    )
    pii = {f.record_ids[0]: f.details["kinds"] for f in result.findings_of("pii")}
    assert pii == PLANTED_PII
    (section,) = result.contamination
    assert {i.eval_id: i.train_ids for i in section.items} == {
        k: [v] for k, v in PLANTED_CONTAMINATION.items()
    }
    assert all(i.coverage == 1.0 for i in section.items)
    assert sorted(section.train_ids) == sorted(PLANTED_CONTAMINATION.values())
    kinds = {f.kind for f in result.findings}
    assert {"exact_duplicate", "near_duplicate", "label_conflict", "pii", "contamination"} <= kinds
    expected_other = {"label_issue", "coverage_gap", "gap_topic"}
    assert (
        kinds - {"exact_duplicate", "near_duplicate", "label_conflict", "pii", "contamination"}
        <= expected_other
    )
    assert all(f.record_ids or f.eval_ids for f in result.findings)


def test_cli_finds_exactly_the_planted_problems(tmp_path: Path) -> None:
    out = tmp_path / "out"
    db = f"sqlite:///{tmp_path / 'ws.db'}"
    code, output = run_cli(
        str(TRAIN),
        "--eval",
        str(EVAL),
        "--out",
        str(out),
        "--skip",
        "coverage",
        "--skip",
        "label_issues",
        "--clean",
        "--db",
        db,
    )
    assert code == 0, output
    assert "exact_duplicate" in output and "Drop 6 duplicate records" in output
    result = Audit.model_validate_json((out / "audit.json").read_text(encoding="utf-8"))
    check_planted(result)
    assert result.label_issues is None and result.coverage == []
    # the cleaned copy: duplicates, conflicting copies and contaminated records are gone,
    # personal data is redacted, every kept record has a weight
    kept = [json.loads(line) for line in (out / "cleaned.jsonl").read_text().splitlines()]
    kept_ids = {r["id"] for r in kept}
    removed = {r["id"]: r["reasons"] for r in map(json.loads, (out / "removed.jsonl").open())}
    assert len(kept) + len(removed) == 161
    assert set(removed) == {*result.duplicates.drop_ids, *PLANTED_CONTAMINATION.values()}
    assert removed["tk-1103"] == ["contaminated"] and removed["tk-1079"] == ["conflicts"]
    texts = {r["id"]: r["text"] for r in kept}
    assert "<EMAIL>" in texts["tk-1144"] and "maria" not in texts["tk-1144"]
    assert "<PHONE>" in texts["tk-1158"] and "415" not in texts["tk-1158"]
    weights = {r["id"]: r["weight"] for r in map(json.loads, (out / "weights.jsonl").open())}
    assert set(weights) == kept_ids
    counts: dict[str, int] = {}
    for r in kept:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    for r in kept:  # balanced: n / (classes * count)
        expected = len(kept) / (len(counts) * counts[r["label"]])
        assert weights[r["id"]] == pytest.approx(expected, rel=1e-5)
    # the stored artifact is the same audit
    row = Store(db).get_artifact("audit", result.audit_id)
    assert row is not None
    assert Audit.model_validate(row.payload).findings == result.findings
    assert str(TRAIN) in row.refs


def test_html_is_self_contained(tmp_path: Path) -> None:
    result = audit(TRAIN, [EVAL], out_dir=tmp_path, config=_fast_config())
    fragment = render_html_section(result)
    assert fragment.startswith('<section class="ws-audit"') and fragment.endswith("</section>")
    assert "<script" not in fragment
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", fragment)
    assert "@import" not in fragment and "url(" not in fragment
    page = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and fragment in page
    assert "m***@example.com" in fragment and "maria.keller" not in fragment
    assert "+1 415 555 0132" not in page
    for planted in ("tk-1101", "msg-027", "tk-1079"):
        assert planted in fragment


def _fast_config():  # type: ignore[no-untyped-def]
    from whetstone.audit import AuditConfig

    return AuditConfig().with_checks(skip=["coverage", "label_issues"])


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": "a"}\n{"text": oops}\n', encoding="utf-8")
    code, output = run_cli(str(bad), "--strict", "--no-store")
    assert code == 2
    assert re.search(r"bad\.jsonl:2: invalid JSON: .*\(column 10\)", output)
    assert len(output.strip().splitlines()) == 1
    code, output = run_cli(str(TRAIN), "--label-column", "intent", "--no-store")
    assert code == 2 and "column 'intent' (--label-column) is not in the file" in output
    code, output = run_cli(str(tmp_path / "none.csv"), "--no-store")
    assert code == 2 and "none.csv: file not found" in output
    cfg = tmp_path / "audit.yaml"
    cfg.write_text("duplicates:\n  threshold: 0.7\n  tresh: 1\n", encoding="utf-8")
    code, output = run_cli(str(TRAIN), "--config", str(cfg), "--no-store")
    assert code == 2 and "audit.yaml:3: unknown key 'duplicates.tresh'" in output
    code, output = run_cli(str(TRAIN), "--only", "dupes", "--no-store")
    assert code == 2 and "unknown check 'dupes'" in output
    assert not (tmp_path / "audit.json").exists()


def test_malformed_rows_are_findings_without_strict(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    lines = TRAIN.read_text(encoding="utf-8").splitlines()
    lines.insert(3, '{"text": "cut off')
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = audit(data, [], config=_fast_config())
    (finding,) = result.findings_of("malformed")
    assert finding.details["line"] == 4 and "invalid JSON" in finding.title
    assert result.train.n_records == 161


def test_resume_reuses_finished_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import whetstone.audit.pipeline as pipeline

    class Crash(Exception):
        pass

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(pipeline, "_write", crash)
    with pytest.raises(Crash):
        audit(TRAIN, [EVAL], out_dir=tmp_path, config=_fast_config())
    assert list((tmp_path / ".audit-partial").glob("*/scan.json"))
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "_scan", crash)  # the saved scan must be used
    result = audit(TRAIN, [EVAL], out_dir=tmp_path, config=_fast_config(), resume=True)
    check_planted(result)
    assert not (tmp_path / ".audit-partial").exists()


def test_run_scores_clean_and_contaminated_items(tmp_path: Path) -> None:
    from whetstone.records import SampleRecord

    ids = [json.loads(line)["id"] for line in EVAL.read_text().splitlines()]
    samples = [
        SampleRecord(
            task="support_intents",
            id=i,
            prompt="p",
            metrics={"accuracy": 1.0 if i in PLANTED_CONTAMINATION or n % 2 else 0.0},
        )
        for n, i in enumerate(ids)
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "samples.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in samples))
    (run_dir / "results.json").write_text(json.dumps({"run_id": "run-1"}))
    result = audit(TRAIN, [EVAL], config=_fast_config(), run=run_dir)
    score = result.contamination[0].score
    assert score is not None and score.run_id == "run-1" and score.metric == "accuracy"
    assert score.contaminated.n == 3 and score.contaminated.value == 1.0
    clean = [
        1.0 if n % 2 else 0.0
        for n, i in enumerate(ids)
        if i not in PLANTED_CONTAMINATION and not _too_short(i)
    ]
    assert score.clean.n == len(clean)
    assert score.clean.value == pytest.approx(sum(clean) / len(clean))
    # three contaminated items: too few for an honest interval of the difference (Wilson-based
    # intervals covered 85-91% there); the permutation test still gives a p-value
    assert score.diff is not None and score.p_value is not None
    assert score.too_few and score.ci_low is None and score.ci_high is None and score.note
    assert score.contaminated.ci_low is not None and score.contaminated.ci_low < 1.0


def _too_short(item_id: str) -> bool:
    for line in EVAL.read_text().splitlines():
        row = json.loads(line)
        if row["id"] == item_id:
            return len(re.findall(r"\w+", row["text"].lower())) < 5
    return False


@pytest.mark.slow
def test_full_audit_of_the_example_with_minilm(tmp_path: Path) -> None:
    """Label issues (MiniLM embeddings + cleanlab) and coverage run too; the planted label flip
    is the worst label issue and the example training data covers the eval topics."""
    code, output = run_cli(str(TRAIN), "-e", str(EVAL), "--out", str(tmp_path), "--no-store")
    assert code == 0, output
    result = Audit.model_validate_json((tmp_path / "audit.json").read_text(encoding="utf-8"))
    check_planted(result)
    issues = result.label_issues
    assert issues is not None and issues.features == "embeddings"
    assert issues.issues[0].id == PLANTED_FLIP and issues.issues[0].suggested == "billing"
    assert issues.oof_accuracy.value > 0.8
    (cov,) = result.coverage
    assert not [t for t in cov.topics if t.gap]
    assert len(cov.far_items) <= 3
