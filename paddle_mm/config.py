"""YAML config + ``-o`` overrides -> a validated plain dict.

Differences from PaddleClas, on purpose: override values are parsed as YAML literals (never ``eval``),
and an unknown key, a wrong type or a missing required key is an error that names the full dotted path,
what was expected and the closest known key. Tools turn :class:`ConfigError` into one line on stderr
and exit code 2 (see :func:`exit_on_config_error`).
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config_schema import SCHEMA, Field, ListOf, OneOf, Section, arch_fields


class ConfigError(ValueError):
    """A bad config file or override. ``str(err)`` is a complete one-line message."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``5e-5`` as a float (YAML 1.2), as users write learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read ``path``, apply ``overrides`` (``"Global.epochs=3"``...), validate and fill defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass an existing YAML file with -c")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides or []:
        apply_override(raw, item)
    return validate(raw)


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``dotted.path[.index]=yaml_literal`` override in place."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form Key.sub=value (example: -o Global.epochs=3)")
    try:
        value = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: value {text!r} is not a YAML literal; quote strings if needed") from None
    parts = key.split(".")
    node: Any = cfg
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]), create=True)
    _set(node, parts[-1], value, key)


def _child(node: Any, part: str, path: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"override path {path!r}: {path.rsplit('.', 1)[0]!r} is a value, not a section")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def _set(node: Any, part: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, path)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"override path {path!r}: its parent is a value, not a section")


def _index(node: list, part: str, path: str) -> int:
    if not part.lstrip("-").isdigit():
        raise ConfigError(f"override path {path!r}: {part!r} indexes a list, so it must be an integer")
    i = int(part)
    if not -len(node) <= i < len(node):
        raise ConfigError(f"override path {path!r}: index {i} out of range for a list of {len(node)} items")
    return i


# ----------------------------------------------------------------------------- validation


def validate(raw: dict) -> dict[str, Any]:
    """Check ``raw`` against the schema; return a new dict with defaults filled in."""
    arch = raw.get("Arch")
    schema = SCHEMA
    if isinstance(arch, dict) and isinstance(arch.get("name"), str):
        schema = copy.copy(SCHEMA)
        schema.fields = dict(SCHEMA.fields, Arch=arch_fields(arch["name"]))
    return _check(raw, schema, "")


def _check(value: Any, spec: Any, path: str) -> Any:
    if isinstance(spec, Section):
        return _check_section(value, spec, path)
    if isinstance(spec, ListOf):
        return _check_list(value, spec, path)
    if isinstance(spec, OneOf):
        return _check_one_of(value, spec, path)
    return _check_field(value, spec, path)


def _check_section(value: Any, spec: Section, path: str) -> dict | None:
    if value is None and spec.optional:
        return None  # as absent: dump_config writes an absent optional section as null, and it must reload
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path or 'config'}: expected a section (mapping), got {_describe(value)}")
    for key in value:
        if key not in spec.fields:
            raise ConfigError(f"{_join(path, key)}: unknown key{_did_you_mean(str(key), spec.fields)}")
    out = {}
    for key, sub in spec.fields.items():
        sub_path = _join(path, key)
        if key in value:
            out[key] = _check(value[key], sub, sub_path)
        elif isinstance(sub, Field) and sub.required:
            raise ConfigError(f"{sub_path}: missing required key ({sub.type_name()}: {sub.doc})")
        elif isinstance(sub, Field):
            out[key] = copy.deepcopy(sub.default)
        elif isinstance(sub, Section) and sub.required:
            raise ConfigError(f"{sub_path}: missing required section ({sub.doc})")
        elif isinstance(sub, Section) and not sub.optional:
            out[key] = _check({}, sub, sub_path)
        else:
            out[key] = None if isinstance(sub, Section) else []
    return out


def _check_list(value: Any, spec: ListOf, path: str) -> list:
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list of {spec.item_name()}, got {_describe(value)}")
    return [_check(v, spec.item, f"{path}.{i}") for i, v in enumerate(value)]


def _check_one_of(value: Any, spec: OneOf, path: str) -> dict:
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(f"{path}: expected a one-key mapping {{Name: {{...}}}} with Name in {sorted(spec.choices)}")
    ((name, body),) = value.items()
    if name not in spec.choices:
        raise ConfigError(f"{path}.{name}: unknown name{_did_you_mean(str(name), spec.choices)}")
    return {name: _check(body, spec.choices[name], f"{path}.{name}")}


def _check_field(value: Any, spec: Field, path: str) -> Any:
    if value is None and (spec.nullable or (not spec.required and spec.default is None)):
        return None
    if not spec.accepts(value):
        raise ConfigError(f"{path}: expected {spec.type_name()}, got {_describe(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and float in spec.types and int not in spec.types:
        value = float(value)
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(
            f"{path}: {value!r} is not one of {list(spec.choices)}{_did_you_mean(str(value), spec.choices)}"
        )
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ConfigError(f"{path}: {value!r} {problem}")
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def _did_you_mean(key: str, known: Any) -> str:
    names = [str(k) for k in known]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if not close:
        lowered = {n.lower(): n for n in names}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(sorted(names))})" if len(names) <= 12 else hint


# ----------------------------------------------------------------------------- command line


def add_config_args(parser) -> None:
    """``-c config.yml`` and ``-o`` in both forms (``-o a=1 -o b=2`` and ``-o a=1 b=2``)."""
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. -o Global.epochs=3 DataLoader.Train.sampler.batch_size=64",
    )


def flatten_overrides(groups: list[list[str]]) -> list[str]:
    return [item for group in groups for item in group]


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a ConfigError into one line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)
