"""A griffe extension for the API page (docs/api.md), loaded by mkdocs.yml.

- Defaults written as a constant's name (``api_version=DEFAULT_API_VERSION``) show the
  constant's value, which is what a reader needs.
- The attrs classes' fields: griffe-fieldz, listed after this extension, turns them into the
  class's parameters with their types and defaults. Before it runs, each field documented in
  the class's ``Attributes:`` section gets that description as its own docstring, where
  griffe-fieldz reads it; afterwards the emptied ``Attributes:`` section is dropped and the
  fields are put right after the description.
"""

from __future__ import annotations

import inspect
from typing import Any

from griffe import (
    Attribute,
    Class,
    Docstring,
    DocstringSectionAttributes,
    DocstringSectionParameters,
    DocstringSectionText,
    Extension,
    Function,
    dynamic_import,
)

_LITERALS = (str, int, float, bool, type(None))


class ApiPage(Extension):
    """Readable defaults, and field descriptions kept for griffe-fieldz."""

    def on_class_members(self, *, cls: Class, **kwargs: Any) -> None:
        if cls.docstring is None:
            return
        for section in cls.docstring.parsed:
            if not isinstance(section, DocstringSectionAttributes):
                continue
            for item in section.value:
                member = cls.members.get(item.name)
                if isinstance(member, Attribute) and member.docstring is None:
                    member.docstring = Docstring(item.description, parent=member)

    def on_class(self, *, cls: Class, **kwargs: Any) -> None:
        if cls.docstring is None:
            return
        parsed = cls.docstring.parsed
        fields = [section for section in parsed if isinstance(section, DocstringSectionParameters)]
        rest = [
            section
            for section in parsed
            if not isinstance(section, DocstringSectionParameters)
            and not (isinstance(section, DocstringSectionAttributes) and not section.value)
        ]
        # The fields right after the description, before "Raises:" and the rest.
        text = next(
            (i for i, section in enumerate(rest) if not isinstance(section, DocstringSectionText)),
            len(rest),
        )
        parsed[:] = rest[:text] + fields + rest[text:]

    def on_function(self, *, func: Function, **kwargs: Any) -> None:
        named = [p for p in func.parameters if str(p.default or "").isidentifier()]
        named = [p for p in named if str(p.default) not in ("None", "True", "False")]
        if not named:
            return
        try:
            signature = inspect.signature(dynamic_import(func.path))
        except (ImportError, TypeError, ValueError):
            return
        values = {}
        for parameter in named:
            runtime = signature.parameters.get(parameter.name)
            if runtime is not None and isinstance(runtime.default, _LITERALS):
                parameter.default = values[parameter.name] = repr(runtime.default)
        # The "Args:" table too, in the function's docstring or (for __init__) its class's,
        # which may have been parsed already.
        for owner in (func, func.parent):
            if owner is None or owner.docstring is None:
                continue
            for section in owner.docstring.parsed:
                if isinstance(section, DocstringSectionParameters):
                    for item in section.value:
                        if item.name in values:
                            item.value = values[item.name]
