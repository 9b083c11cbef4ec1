"""`hearth show ID`: a model described as `ollama show` does, in sections of plain lines.

Everything comes from the model's record (GET /v1/models/{id}, through the server when one runs,
else the folder): the GGUF header's facts that the importer recorded in `metadata`, the
parameters, the system prompt, the license. Capabilities are shown only when the record lists
them; nothing is guessed here. With a flag (`--modelfile`, `--template`, `--system`,
`--parameters`, `--license`) only that part prints, as raw text for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hearth.cli.common import address_from, command, settings_from

LICENSE_LINES = 8  # of a license, in the overview (`--license` prints it whole)
#: Engine settings a Modelfile can carry, by Ollama's name.
ENGINE_OLLAMA_NAMES = {"ctx_len": "num_ctx"}


def _ollama_names() -> dict[str, str]:
    """model.json's request fields -> Ollama's option names (`max_tokens` is `num_predict`)."""
    from hearth.core.ollama_options import OLLAMA_OPTIONS  # what `hearth run`'s /set takes, too

    return {field: name for name, (field, _) in {**OLLAMA_OPTIONS, "stop": ("stop", str)}.items()}


def _metadata(model: dict[str, Any]) -> dict[str, Any]:
    meta = model.get("metadata")
    return meta if isinstance(meta, dict) else {}


def system_of(model: dict[str, Any]) -> str | None:
    """The system prompt a model carries (an Ollama pull or `hearth create` records it)."""
    meta = _metadata(model)
    value = model.get("system") or meta.get("system_prompt") or meta.get("system")
    return value if isinstance(value, str) and value else None


def template_of(model: dict[str, Any]) -> str | None:
    """The recorded template: Ollama's (Go syntax, recorded only), else the GGUF's Jinja one."""
    meta = _metadata(model)
    ollama = meta.get("ollama")
    ollama = ollama if isinstance(ollama, dict) else {}
    value = model.get("template") or ollama.get("template") or meta.get("chat_template")
    return value if isinstance(value, str) and value else None


def license_of(model: dict[str, Any]) -> str | None:
    value = _metadata(model).get("license")
    if isinstance(value, list):
        value = "\n\n".join(str(v) for v in value)
    return value if isinstance(value, str) and value else None


def parameters_of(model: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, value) of the model's request and engine parameters; `stop` one row per string."""
    rows: list[tuple[str, Any]] = []
    for group in ("model_parameters", "engine_parameters"):
        params = model.get(group)
        if not isinstance(params, dict):
            continue
        for name, value in params.items():
            if isinstance(value, list):
                rows += [(name, v) for v in value]
            elif value is not None and not isinstance(value, dict):
                rows.append((name, value))
    return rows


def _shown_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def model_rows(model: dict[str, Any]) -> list[tuple[str, str]]:
    meta = _metadata(model)
    size = meta.get("size_label") or meta.get("parameters")
    if not size and isinstance(meta.get("parameter_count"), int):
        size = _count(meta["parameter_count"])
    facts = (
        ("architecture", meta.get("architecture")),
        ("parameters", size),
        ("context length", meta.get("context_length")),
        ("embedding length", meta.get("embedding_length")),
        ("quantization", meta.get("quantization")),
    )
    return [(label, str(value)) for label, value in facts if value not in (None, "")]


def _count(n: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}".replace(".0", "")
    return str(n)


def overview(model: dict[str, Any]) -> list[str]:
    """The sections of `hearth show ID`, as lines (text from the record made inert)."""
    from hearth.cli.output import clean, clean_text

    sections: list[tuple[str, list[str]]] = []
    rows = model_rows(model)
    sections.append(("Model", _aligned(rows) if rows else ["(no details recorded)"]))
    capabilities = model.get("capabilities")
    if isinstance(capabilities, list) and capabilities:
        sections.append(("Capabilities", [clean(c, 80) for c in capabilities]))
    params = parameters_of(model)
    if params:
        sections.append(("Parameters", _aligned([(n, _shown_value(v)) for n, v in params])))
    if (system := system_of(model)) is not None:
        sections.append(("System", clean_text(system).strip().splitlines()))
    if (text := license_of(model)) is not None:
        lines = clean_text(text).strip().splitlines()
        more = ["…"] if len(lines) > LICENSE_LINES else []
        sections.append(("License", lines[:LICENSE_LINES] + more))
    out: list[str] = []
    for title, lines in sections:
        out += [f"  {title}", *[f"    {clean(line, 200)}" for line in lines], ""]
    return out


def _aligned(rows: list[tuple[str, str]]) -> list[str]:
    from hearth.cli.output import clean

    width = max(len(label) for label, _ in rows)
    return [f"{clean(label, 60):<{width}}    {clean(value, 120)}" for label, value in rows]


def modelfile_of(model: dict[str, Any]) -> str:
    """The model as a Modelfile (`--modelfile`): only the parameters Ollama has a name for, so
    that `hearth create` reads it back."""
    from hearth.core.modelfile_text import quote, quote_parameter  # values read back as they are

    lines = ['# Modelfile generated by "hearth show"', f"FROM {model['id']}"]
    if (template := template_of(model)) is not None:
        lines.append(f"TEMPLATE {quote(template)}")
    if (system := system_of(model)) is not None:
        lines.append(f"SYSTEM {quote(system)}")
    for group, names in (
        ("model_parameters", _ollama_names()),
        ("engine_parameters", ENGINE_OLLAMA_NAMES),
    ):
        for name, value in parameters_of({group: model.get(group)}):
            if name in names:
                shown = quote_parameter(value) if isinstance(value, str) else str(value)
                lines.append(f"PARAMETER {names[name]} {shown}")
    if (text := license_of(model)) is not None:
        lines.append(f"LICENSE {quote(text)}")
    return "\n".join(lines)


def show(args: argparse.Namespace) -> None:
    """Show a model like `ollama show`: architecture, size, context, quantization, parameters.

    One flag prints only that part, as raw text: --modelfile, --template, --system,
    --parameters or --license.
    """
    from hearth.cli.backend import connect
    from hearth.cli.output import clean_text, echo

    model = connect(address_from(args), lambda: settings_from(args)).get_model(args.model_id)
    if args.part is None:
        echo("\n".join(overview(model)).rstrip())
        return
    text: str | None
    if args.part == "parameters":
        text = "\n".join(f"{n:<20}{_shown_value(v)}" for n, v in parameters_of(model)) or None
    else:
        finders = {
            "modelfile": modelfile_of, "template": template_of,
            "system": system_of, "license": license_of,
        }  # fmt: skip
        text = finders[args.part](model)
    echo(clean_text(text) if text is not None else f"(no {args.part} recorded)")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = command(sub, "show", show, parents=[common])
    parser.add_argument("model_id", metavar="ID")
    parts = parser.add_mutually_exclusive_group()
    for part in ("modelfile", "parameters", "template", "system", "license"):
        parts.add_argument(
            f"--{part}", dest="part", action="store_const", const=part, help=f"only the {part}"
        )
    parser.set_defaults(part=None)
