"""The reference part of docs/admin-api.md, generated from the OpenAPI document.

``python -m pbxd.web.apidoc docs/admin-api.md`` rewrites the text between the
``BEGIN/END GENERATED REFERENCE`` markers of that file; a test checks the file
is up to date with the document the server serves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m pbxd.web.apidoc docs/admin-api.md) -->"
END = "<!-- END GENERATED REFERENCE -->"


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else kind


def _fields(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    lines = ["| field | type | required | notes |", "|---|---|---|---|"]
    for name, sub in schema.get("properties", {}).items():
        notes = sub.get("description", "")
        for key in ("minimum", "maximum", "minLength", "maxLength", "pattern"):
            if key in sub:
                notes += f" {key} `{sub[key]}`"
        lines.append(f"| `{name}` | {_type(sub)} | {'yes' if name in required else ''} |"
                     f" {notes.strip()} |")
    return lines


def reference_markdown(document: dict[str, Any]) -> str:
    """Markdown for every path and operation of ``document``."""
    base = document["servers"][0]["url"]
    out: list[str] = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            out += ["", f"### `{method.upper()} {base}{path}`", "", op["summary"] + "."]
            out += ["", "No token needed." if op.get("security") == [] else "Needs a token."]
            if op["parameters"]:
                out += ["", "| parameter | in | type | notes |", "|---|---|---|---|"]
                for p in op["parameters"]:
                    out.append(f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} |"
                               f" {p.get('description', '')} |")
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                out += ["", "Body (JSON): " + schema.get("description", ""), ""]
                out += _fields(schema)
            out += ["", "Responses:", ""]
            for status, response in op["responses"].items():
                media = ", ".join(response["content"])
                out.append(f"- **{status}** ({media}): {response['description']}")
    return "\n".join([BEGIN, *out, "", END])


def _document() -> dict[str, Any]:
    from pbxd.web import calls, recordings, reload, voicemail
    from pbxd.web.api import API_BASE, make_routes
    from pbxd.web.openapi import build_document

    class _Clock:
        def seconds(self) -> float:
            return 0.0

    routes = make_routes(clock=_Clock(), location=None, bans=None, extensions=None,
                         cdr_store=None, audit_store=None,
                         extra_routes=[*calls.routes(None, None), *reload.routes(None, None),
                                       *voicemail.routes(None, None, None),
                                       *recordings.routes(None, None)])
    return build_document(routes, base=API_BASE)


def rewrite(path: Path) -> None:
    """Replace the generated part of ``path`` (or append it)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    generated = reference_markdown(_document())
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + generated + tail
    else:
        text = text.rstrip("\n") + "\n\n" + generated + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    rewrite(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/admin-api.md"))
