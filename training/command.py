"""Typer commands built from a list of options, for commands generated per model.

``medvision train KIND``, ``medvision evaluate KIND`` and ``medvision export KIND`` are made
from their model's registry entry (:mod:`training.tasks.registry`, :mod:`export.specs`), so
their options are data: each is a name, a type and a ``typer.Option``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

#: One command-line option: the parameter name, its type and its ``typer.Option(...)``.
CliOption = tuple[str, Any, Any]


def command(
    options: Sequence[CliOption], run: Callable[..., None], summary: str
) -> Callable[..., None]:
    """A Typer command taking ``options`` (in that order) that calls ``run(**values)``;
    ``summary`` is its help text."""

    def invoke(**values: Any) -> None:
        run(**values)

    keyword = inspect.Parameter.KEYWORD_ONLY
    invoke.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, keyword, default=opt, annotation=t) for name, t, opt in options]
    )
    invoke.__annotations__ = {name: annotation for name, annotation, _ in options}
    invoke.__doc__ = summary
    return invoke
