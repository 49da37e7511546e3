"""Training-data audit: statistics, labels, duplicates, label errors, contamination, coverage,
representation and personal data, each finding tied to the records involved.

```python
from whetstone.audit import audit

result = audit("train.jsonl", ["eval.jsonl"], out_dir="audit-out", clean=True)
for finding in result.findings[:5]:
    print(finding.severity, finding.title, finding.record_ids)
```
"""

from whetstone.audit.config import AuditConfig, ColumnSpec, load_config
from whetstone.audit.html import render_html_section, render_page
from whetstone.audit.loading import Dataset, Record
from whetstone.audit.pipeline import AuditProgress, audit
from whetstone.audit.schema import Audit, Finding, Recommendation

__all__ = [
    "Audit",
    "AuditConfig",
    "AuditProgress",
    "ColumnSpec",
    "Dataset",
    "Finding",
    "Recommendation",
    "Record",
    "audit",
    "load_config",
    "render_html_section",
    "render_page",
]
