"""Protobuf text format (what Triton's `config.pbtxt` is) from plain dicts, so configs read as data."""

from __future__ import annotations

import json
from typing import Any


class Enum(str):
    """A protobuf enum value (e.g. TYPE_FP32): written bare, not quoted."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a quoted string with C-style escapes, as text format reads them


def to_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """A dict is a message, a list a repeated field (one entry per item), anything else a scalar."""
    pad, lines = "  " * indent, []
    for key, value in message.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                lines += [f"{pad}{key} {{", to_pbtxt(item, indent + 1), f"{pad}}}"]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(line for line in lines if line)


def parameters(values: dict[str, Any]) -> list[dict[str, Any]]:
    """ModelConfig.parameters (a map of string -> {string_value}) as repeated key/value entries."""
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]
