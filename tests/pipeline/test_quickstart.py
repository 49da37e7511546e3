"""The README walk-through, followed literally on a fresh clone: `make quickstart` (in its fast
mode), reading the summary, the report, a second run that reuses every stage.

One clone and one quickstart serve every test here (module fixture); the report it writes is
also opened in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score

from tests.conftest import REPO
from whetstone.evaluate.outputs import read_samples
from whetstone.pipeline import load_result
from whetstone.store import Store

pytestmark = pytest.mark.slow
SECTIONS = [
    "summary",
    "evaluation",
    "calibration",
    "confusion",
    "feedback",
    "diagnosis",
    "audit",
    "optimization",
    "comparison",
    "gate",
    "examples",
]


def walkthrough_commands(readme: str) -> list[str]:
    """The shell commands of the README's Walk-through section, in order."""
    section = readme.split("\n## Walk-through\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


@dataclass
class Walkthrough:
    clone: Path
    outputs: list[str]  # stdout and stderr of each command
    stdouts: list[str]
    seconds: list[float]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    venv = REPO / ".venv"
    if not (venv / ".base").exists():
        pytest.skip("the walk-through reuses the checkout's .venv (made by `make`), absent here")
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    clone = tmp_path_factory.mktemp("walkthrough") / "whetstone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(venv)
    # the clone's pyproject.toml is newer than the venv's stamp: make would reinstall
    stamp = (venv / ".base").stat().st_mtime
    os.utime(clone / "pyproject.toml", (stamp - 60, stamp - 60))
    env = {
        **os.environ,
        "WHETSTONE_QUICKSTART_FAST": "1",
        "PYTHONPATH": str(clone / "src"),  # the clone's code, in the checkout's environment
        "COLUMNS": "160",
        "NO_COLOR": "1",
    }
    # a user's shell, not a make recipe: a parent `make test` would make make print directories
    for name in ("WHETSTONE_DB", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(name, None)
    outputs, stdouts, seconds = [], [], []
    for command in walkthrough_commands((clone / "README.md").read_text(encoding="utf-8")):
        t0 = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds.append(time.perf_counter() - t0)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        outputs.append(done.stdout + done.stderr)
        stdouts.append(done.stdout)
    return Walkthrough(clone, outputs, stdouts, seconds)


def test_the_walkthrough_runs_the_loop_and_ends_with_the_report(walkthrough: Walkthrough) -> None:
    commands = walkthrough_commands((walkthrough.clone / "README.md").read_text())
    assert commands[0] == "make quickstart"
    first = walkthrough.outputs[0]
    report = walkthrough.clone / "whetstone-quickstart" / "report.html"
    assert f"report: {report}" in first.replace("\n", "")
    # the terminal output ends with the report's path
    assert walkthrough.stdouts[0].rstrip().splitlines()[-1].startswith("report:")
    for stage in (
        "evaluate/baseline",
        "diagnose",
        "audit/intents_train",
        "optimize/intent-classifier",
        "optimize/intent-classifier-tuned",
        "optimize/intent-student",
        "optimize/intent-student-int8",
        "evaluate/intent-student-int8",
    ):
        assert f"✓ {stage}:" in first, stage
    page = report.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    # the second `make quickstart` of the walk-through reuses every stage
    again = [
        o for c, o in zip(commands, walkthrough.outputs, strict=True) if c == "make quickstart"
    ][1]
    assert "done in" not in again and again.count("reused (same inputs)") == 11


def test_the_quickstart_result_agrees_with_its_own_files(walkthrough: Walkthrough) -> None:
    out = walkthrough.clone / "whetstone-quickstart"
    store = Store(f"sqlite:///{out / 'whetstone.db'}")
    result = load_result(store, "quickstart")
    assert result is not None and all(s.status == "finished" for s in result.stages)
    assert [c.error for c in result.candidates] == [None] * 4
    base = read_samples(out / "runs" / "eval" / "baseline")
    for cand in result.candidates:
        samples = {s.id: s for s in read_samples(out / "runs" / "eval" / cand.name)}
        pairs = [(s, samples[s.id]) for s in base if s.task == "support_intents"]
        assert len(pairs) == 8
        # accuracy recomputed with sklearn from the predictions; McNemar as a binomial test
        acc = accuracy_score([b.gold for _, b in pairs], [b.prediction for _, b in pairs])
        assert cand.metrics["support_intents/accuracy"] == pytest.approx(acc)
        a = np.array([x.metrics["accuracy"] for x, _ in pairs])
        b = np.array([y.metrics["accuracy"] for _, y in pairs])
        only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        cmp = next(m for m in result.comparisons[cand.name].metrics if m.metric == "accuracy")
        expected = stats.binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
        assert cmp.p_value == pytest.approx(expected)
    sizes = {c.name: c.metrics["size_mb"] for c in result.candidates}
    assert sizes["intent-student-int8"] < sizes["intent-student"] < sizes["intent-classifier"]
    assert result.baseline.metrics["size_mb"] > 500  # Gemma 3 270M in float32
    # the rule: the most accurate model under 100 MB
    eligible = {c.name: c.metrics["support_intents/accuracy"] for c in result.candidates}
    assert result.selection is not None
    assert eligible[result.selection.selected or ""] == max(eligible.values())
    summary = json.loads((out / "runs" / "eval" / "baseline" / "results.json").read_text())
    assert set(summary["tasks"]) == {"support_docs", "support_mc", "support_intents", "support_qa"}


def test_the_fast_quickstart_stays_within_its_budget(walkthrough: Walkthrough) -> None:
    first = walkthrough.outputs[0]
    took = float(re.search(r"quickstart finished in (\d+) s", first).group(1))  # type: ignore[union-attr]
    assert took <= walkthrough.seconds[0]
    print(f"quickstart --fast: {took:.0f} s; walk-through commands: {walkthrough.seconds}")


@pytest.mark.browser
def test_the_quickstart_report_opens_in_chromium(walkthrough: Walkthrough, tmp_path: Path) -> None:
    from tests.report.browser import need_browser, open_report

    need_browser()
    report = walkthrough.clone / "whetstone-quickstart" / "report.html"
    shot = tmp_path / "quickstart-report.png"
    seen = open_report(report, shot)
    assert seen.errors == [] and seen.requests == []
    assert list(seen.sections) == SECTIONS
    assert all(height > 20 for _, height in seen.sections.values())
    assert seen.svgs_drawn >= 8
    assert shot.stat().st_size > 100_000
