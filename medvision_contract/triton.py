"""What a Triton Python model reads from its own ``config.pbtxt`` (passed as JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def parameter(config: Mapping[str, Any], key: str, default: str) -> str:
    """The string value of ``parameters[key]`` in a model config, ``default`` when absent
    or empty."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return str(value) if value not in (None, "") else default
