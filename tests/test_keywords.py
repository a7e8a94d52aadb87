"""The keyword families, written once, are what every function of the family shows and
takes: the loss keywords (fastsce._loss.LossKeywords and LOSS_DEFAULTS) and the softmax
keywords (fastsce._softmax.SoftmaxKeywords and SOFTMAX_DEFAULTS).

cross_entropy, cross_entropy_with_grad, softmax and log_softmax spell them out (a call
costs about a microsecond), fastsce.torch mirrors PyTorch's signatures; the other
functions take them as ``**options`` with fastsce._keywords: here each signature is held
to its family's table (names, defaults, annotations, order), and a keyword that is not
one raises TypeError naming the function and the keyword, as Python does.
"""

import importlib
import inspect
import re

import numpy as np
import pytest

import fastsce
from fastsce._linear import LINEAR_DEFAULTS
from fastsce._loss import LOSS_DEFAULTS, LossKeywords, LossOptions
from fastsce._softmax import SOFTMAX_DEFAULTS, SoftmaxKeywords

#: (module, function name) of every function taking the loss keywords by name
LOSS_FUNCTIONS = [
    ("fastsce", "cross_entropy"),
    ("fastsce", "cross_entropy_with_grad"),
    ("fastsce", "CrossEntropyLoss"),
    ("fastsce", "linear_cross_entropy"),
    ("fastsce", "linear_cross_entropy_with_grad"),
    ("fastsce.reference", "cross_entropy"),
    ("fastsce.reference", "cross_entropy_with_grad"),
    ("fastsce.dask", "cross_entropy"),
    ("fastsce.dask", "cross_entropy_with_grad"),
    ("fastsce.jax", "cross_entropy"),
]
IDS = [f"{module}.{name}" for module, name in LOSS_FUNCTIONS]
#: ... and the softmax keywords
SOFTMAX_FUNCTIONS = [
    ("fastsce", "softmax"),
    ("fastsce", "log_softmax"),
    ("fastsce.reference", "softmax"),
    ("fastsce.reference", "log_softmax"),
]
#: (module, function name, family TypedDict, its defaults) of every function of a family
FAMILY_FUNCTIONS = [
    *[(*function, LossKeywords, LOSS_DEFAULTS) for function in LOSS_FUNCTIONS],
    *[(*function, SoftmaxKeywords, SOFTMAX_DEFAULTS) for function in SOFTMAX_FUNCTIONS],
]
FAMILY_IDS = [f"{module}.{name}" for module, name, _, _ in FAMILY_FUNCTIONS]


def function_of(module, name):
    if module in ("fastsce.dask", "fastsce.jax"):
        pytest.importorskip(module.split(".")[1])  # optional
    return getattr(importlib.import_module(module), name)


def annotation(family, name):
    """The family's annotation of `name`, as the string a signature shows (typing keeps
    it as a ForwardRef of that string, or as the string)."""
    given = family.__annotations__[name]
    return getattr(given, "__forward_arg__", given)


def test_one_table():
    """The TypedDict, the defaults and LossOptions name the same options in one order."""
    validated = list(inspect.signature(LossOptions).parameters)
    assert list(LossKeywords.__annotations__) == list(LOSS_DEFAULTS) == validated
    assert list(LINEAR_DEFAULTS) == ["linear_bias", *LOSS_DEFAULTS, "memory_budget"]
    assert list(SoftmaxKeywords.__annotations__) == list(SOFTMAX_DEFAULTS)


@pytest.mark.parametrize("module, name, family, defaults", FAMILY_FUNCTIONS, ids=FAMILY_IDS)
def test_signature_shows_every_keyword_of_its_family(module, name, family, defaults):
    parameters = list(inspect.signature(function_of(module, name)).parameters.values())
    keyword_only = [p for p in parameters if p.kind is p.KEYWORD_ONLY]
    shown = [p for p in keyword_only if p.name in defaults]
    assert [p.name for p in shown] == list(defaults)
    assert not [p for p in parameters if p.kind is p.VAR_KEYWORD]
    for parameter in shown:
        assert parameter.default == defaults[parameter.name], parameter
        assert parameter.annotation == annotation(family, parameter.name), parameter
    first = keyword_only.index(shown[0])  # together, in the table's order
    assert keyword_only[first : first + len(shown)] == shown


def test_softmax_positional_parameters():
    for module, name in SOFTMAX_FUNCTIONS:
        parameters = inspect.signature(function_of(module, name)).parameters.values()
        assert [(p.name, p.default) for p in parameters if p.kind is not p.KEYWORD_ONLY] == [
            ("x", inspect.Parameter.empty),
            ("axis", -1),
        ]


def test_linear_keywords_keep_their_order():
    names = list(inspect.signature(fastsce.linear_cross_entropy).parameters)
    assert names == ["input", "linear_weight", "target", *LINEAR_DEFAULTS]


def call(function, keywords):
    logits = np.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]])
    if inspect.isclass(function):
        return function(**keywords)(logits, [1, 0])
    if function.__name__.startswith("linear_"):
        return function(logits, np.eye(3), [1, 0], **keywords)
    if function.__name__ in ("softmax", "log_softmax"):
        return function(logits, **keywords)
    return function(logits, [1, 0], **keywords)


@pytest.mark.parametrize("module, name, family, defaults", FAMILY_FUNCTIONS, ids=FAMILY_IDS)
def test_an_unknown_keyword_is_python_s_type_error(module, name, family, defaults):
    function = function_of(module, name)
    qualname = f"{name}.__init__" if inspect.isclass(function) else name
    message = f"{qualname}() got an unexpected keyword argument 'weigth'"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}"):
        call(function, {"weigth": np.ones(3)})


@pytest.mark.parametrize("module, name", LOSS_FUNCTIONS, ids=IDS)
def test_keywords_given_are_the_ones_used(module, name):
    """A keyword changes the result as it does fastsce.cross_entropy's (not the default)."""
    function = function_of(module, name)
    keywords = {"label_smoothing": 0.25, "z_loss": 0.5, "temperature": 2.0}
    expected = fastsce.cross_entropy(np.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]]), [1, 0])
    changed = fastsce.cross_entropy(
        np.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]]), [1, 0], **keywords
    )
    result = call(function, keywords)
    loss = result[0] if isinstance(result, tuple) else result
    loss = float(np.asarray(loss.compute() if hasattr(loss, "compute") else loss))
    assert loss == pytest.approx(changed, rel=1e-6) and loss != pytest.approx(expected)


@pytest.mark.parametrize("module, name", SOFTMAX_FUNCTIONS)
def test_softmax_keywords_given_are_the_ones_used(module, name):
    """temperature changes the values as fastsce's does, and `out` receives them."""
    function = function_of(module, name)
    x = np.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]])
    expected = getattr(fastsce, name)(x, temperature=2.0)
    out = np.empty_like(x)
    result = call(function, {"temperature": 2.0, "out": out})
    assert result is out
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    assert not np.allclose(out, getattr(fastsce, name)(x))
