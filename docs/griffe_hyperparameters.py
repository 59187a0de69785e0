"""Griffe extension of the API pages: the keywords of ``pgpo_core.hyperparameters.takes``.

mkdocstrings reads the source statically (nothing is imported), so it sees a function
decorated with ``@takes(WeightingHyperparameters)`` as ``f(..., *, hp)``, while
``inspect.signature`` shows the keywords ``takes`` installs in ``hp``'s place. This
extension does the same substitution on griffe's model, from the same declaration (the
dataclass's fields, read statically): the pages show ``f(..., *, tau=0.4, ...)``.

It also shows a dataclass field declared as ``dataclasses.field(default=x, ...)`` with
the value ``x`` rather than the whole call.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe

_TAKES = "pgpo_core.hyperparameters.takes"


def _keyword(call: Any, name: str) -> Any:
    """The value of keyword argument ``name`` of the call expression ``call``, or None."""
    for arg in getattr(call, "arguments", ()):
        if isinstance(arg, griffe.ExprKeyword) and arg.name == name:
            return arg.value
    return None


def _field_default(value: Any) -> Any:
    """``x`` for ``dataclasses.field(default=x, ...)``; ``value`` itself otherwise."""
    if isinstance(value, griffe.ExprCall) and str(value.function) in ("dataclasses.field",
                                                                       "field"):
        default = _keyword(value, "default")
        if default is not None:
            return default
    return value


class HyperparameterKeywords(griffe.Extension):
    """Replace ``hp`` by the declaration's keywords in the signatures of ``@takes`` functions."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if isinstance(attr.parent, griffe.Class):
            attr.value = _field_default(attr.value)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs: Any) -> None:
        for func in _functions(pkg):
            for decorator in func.decorators:
                call = decorator.value
                if not (isinstance(call, griffe.ExprCall)
                        and getattr(call.function, "canonical_path", None) == _TAKES):
                    continue
                func.parameters = griffe.Parameters(*_substituted(func, call, loader))


def _functions(obj: griffe.Object):
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Function):
            yield member
        elif isinstance(member, (griffe.Module, griffe.Class)):
            yield from _functions(member)


def _substituted(func: griffe.Function, call: griffe.ExprCall,
                 loader: griffe.GriffeLoader) -> list[griffe.Parameter]:
    path = call.arguments[0].canonical_path
    package = path.split(".", 1)[0]
    if package not in loader.modules_collection:
        loader.load(package)
    declaration = loader.modules_collection[path]
    only = _keyword(call, "only")
    names = None if only is None else [ast.literal_eval(str(e)) for e in only.elements]
    keywords = [
        griffe.Parameter(attr.name, annotation=attr.annotation,
                         kind=griffe.ParameterKind.keyword_only,
                         default=_field_default(attr.value))
        for attr in declaration.members.values()
        if isinstance(attr, griffe.Attribute) and "instance-attribute" in attr.labels
        and (names is None or attr.name in names)
    ]
    out: list[griffe.Parameter] = []
    for param in func.parameters:
        out.extend(keywords if param.name == "hp" else [param])
    return out
