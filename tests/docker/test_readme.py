"""The README's settings table is generated from the settings model and must stay in sync with it:
python tests/docker/test_readme.py    # prints the table to paste between the markers"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import annotated_types as at
from deploy import DOCKER, REPO

from service.core.settings import Settings

README = REPO / "README.md"
BEGIN, END = "<!-- settings table: begin -->", "<!-- settings table: end -->"


def _bounds(field) -> str:
    union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(field.annotation) if a is not type(None)] if union else [field.annotation]
    if typing.get_origin(field.annotation) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(field.annotation))
    kind = {int: "integer", float: "number", str: "text", Path: "path", list[str]: "JSON list of text"}.get(
        args[0], "secret text" if "Secret" in str(args[0]) else str(args[0])
    )
    ops = {at.Ge: ("≥", "ge"), at.Gt: (">", "gt"), at.Le: ("≤", "le"), at.Lt: ("<", "lt")}
    limits = [f"{ops[type(m)][0]} {_number(getattr(m, ops[type(m)][1]))}" for m in field.metadata if type(m) in ops]
    return ", ".join([kind, *limits])


def _number(value: float) -> str:
    return f"{int(value):,}".replace(",", " ") if float(value).is_integer() else f"{value:g}"


def _default(field) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
    return f"`{value!r}`" if isinstance(value, list) else f"`{value}`"


def settings_table() -> str:
    rows = ["| Variable | Default | Allowed | Meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = field.description.replace("*", "\\*")
        rows.append(f"| `MNAD_{name.upper()}` | {_default(field)} | {_bounds(field)} | {meaning} |")
    return "\n".join(rows)


def test_readme_settings_table_is_in_sync() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text, f"README.md has no settings table between {BEGIN} and {END}"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == settings_table(), "README settings table is stale: run python tests/docker/test_readme.py"


def test_readme_deploy_section_names_the_real_files() -> None:
    deploy = re.search(r"^## Deploy\n(.*?)(?=^## |\Z)", README.read_text(), re.MULTILINE | re.DOTALL)
    assert deploy, "README.md has no '## Deploy' section"
    body = deploy.group(1)
    for path in ("docker/Dockerfile", "docker/Dockerfile.cuda", "docker-compose.yml"):
        assert path in body and (REPO / path).exists()
    assert "docker compose up" in body and "not run here" in body.lower()
    assert (DOCKER / "prometheus.yml").exists()


if __name__ == "__main__":
    print(settings_table())
