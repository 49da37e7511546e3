"""The gate for a CI system: JUnit XML (one test case per check) and a Markdown summary (a CI
step summary or a pull-request comment).

In JUnit a failed check is a ``<failure>`` and an inconclusive one an ``<error>``: the gate did
not pass, but the data could not tell, which is not the candidate's fault.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from whetstone.evaluate.gate import GateResult
from whetstone.report.tables import check_rows

_COLUMNS = (
    ("candidate", "candidate"),
    ("metric", "metric"),
    ("baseline", "baseline"),
    ("value", "candidate value"),
    ("diff", "difference"),
    ("ci", "{level} interval"),
    ("margin", "margin"),
    ("detectable", "detectable worsening"),
    ("pass_power", "passes if unchanged"),
    ("n", "items"),
    ("status", "verdict"),
)


def gate_junit(gate: GateResult, name: str = "whetstone gate") -> str:
    """The gate as a JUnit XML test suite."""
    checks = gate.checks
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(checks)),
        failures=str(sum(c.verdict == "fail" for c in checks)),
        errors=str(sum(c.verdict == "inconclusive" for c in checks)),
        skipped="0",
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=c.candidate, name=c.metric)
        if c.verdict == "fail":
            ET.SubElement(case, "failure", message=c.reason, type="worse")
        elif c.verdict == "inconclusive":
            ET.SubElement(case, "error", message=c.reason, type="inconclusive")
        ET.SubElement(case, "system-out").text = _detail(c.reason, c.margin, c.n)
    root = ET.Element("testsuites", name=name)
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _detail(reason: str, margin: str, n: int) -> str:
    return f"{reason} (margin {margin or 'none'}, {n} items)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def checks_markdown(rows: list[dict[str, str]], level: str, tests: int) -> list[str]:
    """The gate's check rows (`check_rows`) as Markdown table lines, with how to read them."""
    if not rows:
        return []
    heads = [head.format(level=level) for _, head in _COLUMNS]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_cell(row[k]) for k, _ in _COLUMNS) + " |" for row in rows]
    return [
        *lines,
        "",
        f"pass: the worse end of the {level} paired interval is within the margin; "
        f"fail: worse than the margin even at the better end of the Bonferroni interval over "
        f"{tests} check(s); inconclusive: neither. Detectable worsening: the true drop a fail "
        "catches with 80% power.",
        "",
    ]


def gate_markdown(gate: GateResult, title: str = "Regression gate") -> str:
    """The gate as Markdown: the verdict, a table of the checks, and how to read it."""
    level = f"{100 * (1 - gate.alpha):g}%"
    lines = [f"### {title}: {gate.verdict}", "", _cell(gate.message), ""]
    lines += checks_markdown(check_rows(gate), level, gate.tests)
    return "\n".join(lines).rstrip() + "\n"
