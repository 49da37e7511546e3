"""The prompts of a campaign: a task file's items, a JSONL file, or an inline list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from whetstone.errors import ConfigError, DataError
from whetstone.feedback.config import PromptItem, PromptSource

MAX_PROMPTS = 20_000
"""Most prompts one campaign may hold."""


class CampaignItem(BaseModel):
    """A prompt as stored: a unique id, the text the model sees and an optional reference."""

    item_id: str
    prompt: str
    reference: str | None = None


def load_prompts(
    source: PromptSource, base_dir: Path | None = None, *, confined: bool = False
) -> list[CampaignItem]:
    """The items of ``source`` (paths relative to ``base_dir``), checked for unique ids.

    ``confined``: every file read (the JSONL, the task file and the data files it names) must
    lie inside ``base_dir`` once links are followed, as the web app requires of owners."""
    if source.items is not None:
        items = [_from_inline(i, item) for i, item in enumerate(source.items)]
    elif source.jsonl is not None:
        items = read_jsonl(_path(source.jsonl, base_dir, "prompts.jsonl", confined), source)
    else:
        items = _from_task(source, base_dir, confined)
    if source.limit is not None:
        items = items[: source.limit]
    if not items:
        raise DataError("the campaign's prompt source holds no prompts")
    if len(items) > MAX_PROMPTS:
        raise DataError(f"the prompt source holds {len(items)} prompts; at most {MAX_PROMPTS}")
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise DataError(f"prompt id {item.item_id!r} occurs twice; ids must be unique")
        seen.add(item.item_id)
    return items


def inside(path: Path, root: Path | None, field: str, raw: str) -> Path:
    """``path`` when it resolves inside ``root``; else a ConfigError that names only what the
    owner typed."""
    if root is None:
        raise ConfigError(
            f"field '{field}': this studio reads no files (start it with a data folder)"
        )
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(f"field '{field}': {raw!r} is outside the studio's data folder")
    return resolved


def _path(raw: str, base_dir: Path | None, field: str, confined: bool = False) -> Path:
    """A file path from the config, relative to the config's folder (inside it when
    ``confined``)."""
    path = Path(raw) if confined else Path(raw).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if confined:
        path = inside(path, base_dir, field, raw)
        if not path.is_file():
            raise ConfigError(f"field '{field}': file {raw!r} not found in the data folder")
    if not path.is_file():
        raise ConfigError(f"field '{field}': file {raw!r} not found (looked for {path})")
    return path


def _from_inline(index: int, item: PromptItem) -> CampaignItem:
    """An inline prompt; its id defaults to its position."""
    return CampaignItem(
        item_id=item.id if item.id is not None else str(index),
        prompt=item.prompt,
        reference=item.reference,
    )


def read_jsonl(path: Path, source: PromptSource) -> list[CampaignItem]:
    """Prompts from a JSONL file; DataError names the file, line and missing field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the prompt file: {e}") from e
    return parse_jsonl_lines(lines, str(path), source)


def parse_jsonl_lines(lines: list[str], where: str, source: PromptSource) -> list[CampaignItem]:
    """Prompts from the lines of a JSONL document (a file or an upload)."""
    items: list[CampaignItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}:{number}: invalid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise DataError(f"{where}:{number}: expected a JSON object per line")
        items.append(_from_row(row, len(items), f"{where}:{number}", source))
    return items


def _from_row(row: dict[str, Any], index: int, where: str, source: PromptSource) -> CampaignItem:
    """One JSONL row as an item."""
    prompt = row.get(source.prompt_field)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(
            f"{where}: field {source.prompt_field!r} missing or empty (expected the prompt text; "
            f"fields present: {', '.join(map(str, row)) or 'none'})"
        )
    item_id = row.get(source.id_field) if source.id_field else None
    reference = row.get(source.reference_field) if source.reference_field else None
    if isinstance(reference, list):
        reference = str(reference[0]) if reference else None
    return CampaignItem(
        item_id=str(item_id) if item_id is not None else str(index),
        prompt=prompt,
        reference=None if reference is None else str(reference),
    )


def _from_task(
    source: PromptSource, base_dir: Path | None, confined: bool = False
) -> list[CampaignItem]:
    """The rendered prompts (few-shot examples included) of a task file's items."""
    from whetstone.tasks import load_fewshot, load_items, load_tasks
    from whetstone.tasks.prompts import answer_text, build_prompt

    tasks = load_tasks(_path(source.task or "", base_dir, "prompts.task", confined))
    if source.task_name is not None:
        tasks = [t for t in tasks if t.name == source.task_name]
        if not tasks:
            raise ConfigError(
                f"field 'prompts.task_name': no task {source.task_name!r} in the file"
            )
    elif len(tasks) > 1:
        names = ", ".join(t.name for t in tasks)
        raise ConfigError(f"field 'prompts.task_name': the suite holds {names}; name one")
    task = tasks[0]
    if confined:  # the data files the task names, too
        wanted = [task.data.path] + (
            [task.fewshot.path] if task.fewshot and task.fewshot.path else []
        )
        for data in wanted:
            inside(task.resolve(data), base_dir, "prompts.task", data)
    if task.kind == "perplexity":
        raise ConfigError(f"task {task.name!r} is a perplexity task: it has no prompts to answer")
    rows = load_items(task, limit=source.limit)
    pool = load_fewshot(task) if task.fewshot is not None else []
    return [
        CampaignItem(
            item_id=str(row["_id"]),
            prompt=build_prompt(task, row, pool),
            reference=answer_text(task, row).strip() or None,
        )
        for row in rows
    ]
