"""Keyword arguments that several public functions share, written once.

A family of keywords (the loss options, say) is a TypedDict, which gives mypy the names
and types, and a dict of their defaults, which gives their order.  A function takes the
family as ``**options: Unpack[Family]``, so that mypy checks every keyword a caller
passes, and is decorated with ``@keyword_signature(Family, DEFAULTS)``: its
``__signature__``, what inspect.signature and help() show, lists each keyword with its
default after the positional parameters, before the function's own keyword-only ones.
In its body, ``keyword_arguments`` fills in the defaults and raises Python's own
TypeError for a keyword the family does not have.  Nothing happens per call beyond that
one loop over the keywords given, so this is for functions whose calls cost more than a
microsecond (fastsce.cross_entropy, cross_entropy_with_grad, softmax and log_softmax
spell their keywords out instead; tests/test_keywords.py holds every signature to its
family).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

_Function = TypeVar("_Function", bound=Callable[..., Any])
_Family = TypeVar("_Family", bound=Mapping[str, object])


def keyword_signature(
    family: type[Mapping[str, object]], defaults: Mapping[str, object]
) -> Callable[[_Function], _Function]:
    """A decorator: the function's signature shows `family`'s keywords, with `defaults`
    (a TypedDict's annotations, strings under ``from __future__ import annotations``,
    or typing's ForwardRefs of them), in place of its ``**options``."""
    annotations = family.__annotations__
    keywords = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=default,
            annotation=getattr(annotations[name], "__forward_arg__", annotations[name]),
        )
        for name, default in defaults.items()
    ]

    def decorate(function: _Function) -> _Function:
        signature = inspect.signature(function)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        leading = [p for p in own if p.kind is not p.KEYWORD_ONLY]
        trailing = [p for p in own if p.kind is p.KEYWORD_ONLY]
        function.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*leading, *keywords, *trailing]
        )
        return function

    return decorate


def keyword_arguments(
    function: Callable[..., object], given: Mapping[str, object], defaults: _Family
) -> _Family:
    """`defaults` updated with the keywords `function` was given as ``**options``;
    TypeError, in Python's words, for a keyword that is not one of them."""
    for name in given:
        if name not in defaults:
            raise TypeError(
                f"{function.__qualname__}() got an unexpected keyword argument {name!r}"
            )
    return cast(_Family, {**defaults, **given})
