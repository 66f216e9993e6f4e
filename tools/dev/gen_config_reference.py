"""Write docs/config_reference.md from paddle_mm/config_schema.py (the single source of truth).

python tools/dev/gen_config_reference.py          # rewrite the page
python tools/dev/gen_config_reference.py --check  # exit 1 if the page is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from paddle_mm.config_schema import SCHEMA, Field, ListOf, OneOf, Section, arch_fields
from paddle_mm.models import list_models

PAGE = ROOT / "docs" / "config_reference.md"

INTRO = """# Config reference

Generated from `paddle_mm/config_schema.py` by `python tools/dev/gen_config_reference.py`; a test fails
when this page and the schema disagree.

Configs are YAML with PaddleClas's sections. Override any key from the command line with `-o`, in
either form: `-o Global.epochs=3 -o Global.seed=1` or `-o Global.epochs=3 Global.seed=1`. Paths are
dotted, list items are addressed by index (`Metric.Eval.0.Recall.topk=[1,5]`), values are YAML literals
(`5e-5` is a float, `null` clears a value, quote strings that look like numbers). Values are never
evaluated as code.

Unlike PaddleClas, an unknown key, a wrong type or a missing required key is an error: the tool prints
one line naming the full dotted path, what was expected and the closest known key, and exits with
code 2. *required* marks keys without a default.
"""


def _default(f: Field) -> str:
    if f.required:
        return "*required*"
    return f"`{f.default!r}`" if f.default is not None else "`null`"


def _rows(section: Section, path: str) -> list[str]:
    rows: list[str] = []
    for key, spec in section.fields.items():
        full = f"{path}.{key}" if path else key
        if isinstance(spec, Field):
            doc = spec.doc + (f" (one of {', '.join(map(str, spec.choices))})" if spec.choices else "")
            rows.append(f"| `{full}` | {spec.type_name()} | {_default(spec)} | {doc} |")
        elif isinstance(spec, Section):
            rows.extend(_rows(spec, full))
        elif isinstance(spec, ListOf) and isinstance(spec.item, OneOf):
            rows.append(f"| `{full}` | list | `[]` | {spec.doc}; each item is `{{Name: {{...}}}}` |")
            for name, body in spec.item.choices.items():
                rows.extend(_rows(body, f"{full}.N.{name}"))
    return rows


def render() -> str:
    out = [INTRO]
    for name, section in SCHEMA.fields.items():
        if name == "Arch":
            section = arch_fields("ViT-B-16")
        out.append(f"\n## {name}\n")
        if section.doc:
            out.append(f"{section.doc[0].upper()}{section.doc[1:]}.\n")
        if name == "Arch":
            out.append(
                f"`Arch.name` is one of: {', '.join(f'`{m}`' for m in list_models())} "
                "(`paddle_mm/models/model_configs/<name>.json`). Every field of that file may be overridden "
                "here; defaults shown for ViT-B-16.\n"
            )
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        out.extend(_rows(section, name))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if PAGE.read_text(encoding="utf-8") == text else 1)
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
