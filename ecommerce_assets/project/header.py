"""The header of a model file: a YAML mapping in the file's leading `/* ... */` comment.

Validated against the pydantic schema below (no unknown keys, no wrong types, no unknown check
kinds); every error names the file and the line in the file.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ecommerce_assets.errors import ModelError
from ecommerce_assets.project.checks import ColumnCheck, SqlCheck, Strict

# `export:` in a header writes the model's rows to <output_dir>/exports/<file> with DuckDB's COPY.
EXPORT_FORMATS = {".csv": "format csv, header true", ".parquet": "format parquet"}

_COMMENT_MARK = re.compile(r"/\*|\*/")

# `owner:` in a header: an email (the pattern Dagster validates owners with) or a team name, with
# or without Dagster's `team:` prefix.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")
_TEAM = re.compile(r"(?:team:)?([A-Za-z0-9][A-Za-z0-9_.-]*)")


def dagster_owner(owner: str) -> str:
    """An owner as Dagster writes it: `analytics` and `team:analytics` -> `team:analytics`, an
    email unchanged. ValueError for anything else."""
    owner = owner.strip()
    if _EMAIL.fullmatch(owner):
        return owner
    team = _TEAM.fullmatch(owner)
    if team is None:
        raise ValueError(
            f"use a team name (letters, digits, '_', '-', '.'; e.g. analytics or team:analytics) "
            f"or an email address, not {owner!r}"
        )
    return f"team:{team.group(1)}"


class ExportSpec(Strict):
    file: str
    where: str | None = None
    order_by: str | None = None

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, file: str) -> str:
        if Path(file).name != file or Path(file).suffix not in EXPORT_FORMATS:
            raise PydanticCustomError(
                "export_file",
                "export file must be a plain file name ending in one of {formats}, not {file}",
                {"formats": ", ".join(sorted(EXPORT_FORMATS)), "file": repr(file)},
            )
        return file


class ColumnSpec(Strict):
    description: str = ""
    checks: list[ColumnCheck] = Field(default_factory=list)


class Header(Strict):
    """The YAML header of a model file."""

    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    checks: list[SqlCheck] = Field(default_factory=list)
    materialized: Literal["view", "table", "incremental"] | None = None
    unique_key: str | None = None
    # merge: every row recomputed, a row's updated_at kept while its content is the same.
    # delete+insert: only the keys the run's raw changes reach (see project/changed.py).
    incremental_strategy: Literal["merge", "delete+insert"] | None = None
    # delete+insert: the published rows a run replaces; default `@changed(<unique_key>)`.
    replace_where: str | None = None
    export: ExportSpec | None = None
    # Normalized to Dagster's form (`team:<name>` or an email); default: the layer's owner.
    owner: str | None = None

    @field_validator("owner")
    @classmethod
    def _dagster_owner(cls, owner: str | None) -> str | None:
        if owner is None:
            return None
        try:
            return dagster_owner(owner)
        except ValueError as e:
            raise PydanticCustomError("owner", "{message}", {"message": str(e)}) from None

    @model_validator(mode="before")
    @classmethod
    def _bare_columns(cls, data: Any) -> Any:
        """`email:` with nothing under it is a column without description or checks."""
        if isinstance(data, dict) and isinstance(data.get("columns"), dict):
            data = {**data, "columns": {c: {} if s is None else s for c, s in data["columns"].items()}}
        return data


@dataclass(frozen=True)
class ParsedHeader:
    """A validated header, with what it takes to name the file line of any of its keys."""

    header: Header
    where: str
    node: yaml.Node | None = None
    first_line: int = 1

    def line_of(self, loc: Sequence) -> int:
        return _line_at(self.node, loc, self.first_line)

    def text_line(self, loc: Sequence, value: str) -> int:
        return _text_first_line(self.node, loc, self.first_line, value)

    def error(self, loc: Sequence, message: str) -> ModelError:
        return ModelError(f"{self.where}:{self.line_of(loc)}: {_dotted(loc)}: {message}")


def read_header(text: str, where: str) -> tuple[ParsedHeader, int]:
    """The file's header (empty when the file has none) and the offset where its SQL starts."""
    header_text, first_line, body_start = _split_header(text, where)
    parsed = ParsedHeader(Header(), where)
    if header_text is not None:
        data, node = _load_yaml(header_text, where, first_line)
        try:
            header = Header.model_validate({} if data is None else data)
        except ValidationError as e:
            raise ModelError(_validation_message(e, where, node, first_line)) from e
        parsed = ParsedHeader(header, where, node, first_line)
    return parsed, _skip_blank_lines(text, body_start)


def _split_header(text: str, where: str) -> tuple[str | None, int, int]:
    """(the header's text or None, the file line that text starts on, the offset past its `*/`).

    DuckDB block comments nest, so the header ends at the `*/` that brings the depth back to 0:
    a `/* note */` in a check's SQL stays inside the header.
    """
    opening = re.match(r"\s*/\*", text)
    if not opening:
        return None, 1, 0
    line = text.count("\n", 0, opening.end()) + 1
    depth = 1
    for mark in _COMMENT_MARK.finditer(text, opening.end()):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return text[opening.end() : mark.start()], line, mark.end()
    raise ModelError(f"{where}:{line}: the header comment opened here never closes (comments nest: each /* needs a */)")


def _skip_blank_lines(text: str, start: int) -> int:
    """Where the SQL starts: past the blank rest of the header's last line and any blank lines."""
    while True:
        end = text.find("\n", start)
        if end == -1 or text[start:end].strip():
            return start
        start = end + 1


def _load_yaml(header: str, where: str, first_line: int) -> tuple[Any, yaml.Node | None]:
    """The header's data and its node tree (for line numbers); a key written twice is an error."""
    loader = yaml.SafeLoader(header)
    try:
        node = loader.get_single_node()
        _no_duplicate_keys(node, where, first_line)
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = first_line + mark.line if mark else first_line
        raise ModelError(f"{where}:{line}: the header comment is not valid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise ModelError(f"{where}:{first_line}: the header comment is not valid YAML: {e}") from e
    finally:
        loader.dispose()


def _no_duplicate_keys(node: yaml.Node | None, where: str, first_line: int) -> None:
    """YAML silently keeps the last of two equal keys; a header never means that."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ModelError(f"{where}:{first_line + key.start_mark.line}: key {key.value!r} is written twice")
                seen.add(key.value)
            _no_duplicate_keys(value, where, first_line)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _no_duplicate_keys(item, where, first_line)


def _node_at(node: yaml.Node | None, loc: Sequence) -> tuple[yaml.Node | None, int]:
    """The YAML node a pydantic error location leads to (as far as the YAML goes) and its 0-based line.

    A key's line is the key's own (where an unknown key is written), an item's its first line.
    """
    line = node.start_mark.line if node is not None else 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                (kv for kv in node.value if isinstance(kv[0], yaml.ScalarNode) and kv[0].value == str(part)), None
            )
            if match is None:  # a missing key, or pydantic's "[key]": the mapping or key already found
                break
            line, node = match[0].start_mark.line, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return node, line


def _line_at(node: yaml.Node | None, loc: Sequence, first_line: int) -> int:
    return first_line + _node_at(node, loc)[1]


def _text_first_line(node: yaml.Node | None, loc: Sequence, first_line: int, value: str) -> int:
    """The file line of the first non-blank line of a header string (a check's `sql:`).

    Exact for a `|` block and a one-line value; YAML folds the lines of the other styles.
    """
    scalar, line = _node_at(node, loc)
    if isinstance(scalar, yaml.ScalarNode) and scalar.style in ("|", ">"):
        line += 1  # the text starts on the line after the indicator
    return first_line + line + value[: len(value) - len(value.lstrip())].count("\n")


def _dotted(loc: Sequence) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "header"


def _validation_message(error: ValidationError, where: str, node: yaml.Node | None, first_line: int) -> str:
    """One line per problem: `file:line: key.path: what is wrong`."""
    lines = []
    for e in error.errors(include_url=False):
        loc = tuple(e["loc"])
        message = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _keys_at(Header, loc[:-1])
            message = f"unknown key {loc[-1]!r}" + (f" (use one of {', '.join(allowed)})" if allowed else "")
        elif not loc and e["type"] == "model_type":
            message = f"the leading /* */ comment is the header, a YAML mapping of {', '.join(Header.model_fields)}"
        elif e["type"] == "model_type":
            message = f"expected a mapping, not {e['input']!r}"
        lines.append((_line_at(node, loc, first_line), f"{_dotted(loc)}: {message}"))
    return "\n".join(f"{where}:{line}: {message}" for line, message in sorted(dict.fromkeys(lines)))


def _keys_at(model: type[BaseModel], loc: Sequence) -> list[str] | None:
    """The keys the header schema takes at `loc`, for the message about an unknown key."""
    annotation: Any = model
    for part in (*loc, None):
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if part is None:
            break
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if part not in annotation.model_fields:
                return None
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return None
