"""The loss keywords, written once (fastsce._loss.LossKeywords and LOSS_DEFAULTS), are what
every loss function shows and takes.

cross_entropy and cross_entropy_with_grad spell them out (a call costs about a
microsecond), fastsce.torch mirrors PyTorch's signatures; the other functions take them
as ``**options`` with fastsce._keywords: here each signature is held to the table (names,
defaults, annotations, order), and a keyword that is not one raises TypeError naming the
function and the keyword, as Python does.
"""

import importlib
import inspect
import re

import numpy as np
import pytest

import fastsce
from fastsce._linear import LINEAR_DEFAULTS
from fastsce._loss import LOSS_DEFAULTS, LossKeywords, LossOptions

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


def function_of(module, name):
    if module in ("fastsce.dask", "fastsce.jax"):
        pytest.importorskip(module.split(".")[1])  # optional
    return getattr(importlib.import_module(module), name)


def annotation(name):
    """LossKeywords' annotation of `name`, as the string a signature shows (typing keeps
    it as a ForwardRef of that string, or as the string)."""
    given = LossKeywords.__annotations__[name]
    return getattr(given, "__forward_arg__", given)


def test_one_table():
    """The TypedDict, the defaults and LossOptions name the same options in one order."""
    validated = list(inspect.signature(LossOptions).parameters)
    assert list(LossKeywords.__annotations__) == list(LOSS_DEFAULTS) == validated
    assert list(LINEAR_DEFAULTS) == ["linear_bias", *LOSS_DEFAULTS, "memory_budget"]


@pytest.mark.parametrize("module, name", LOSS_FUNCTIONS, ids=IDS)
def test_signature_shows_every_loss_keyword(module, name):
    parameters = list(inspect.signature(function_of(module, name)).parameters.values())
    keyword_only = [p for p in parameters if p.kind is p.KEYWORD_ONLY]
    shown = [p for p in keyword_only if p.name in LOSS_DEFAULTS]
    assert [p.name for p in shown] == list(LOSS_DEFAULTS)
    assert not [p for p in parameters if p.kind is p.VAR_KEYWORD]
    for parameter in shown:
        assert parameter.default == LOSS_DEFAULTS[parameter.name], parameter
        assert parameter.annotation == annotation(parameter.name), parameter
    first = keyword_only.index(shown[0])  # together, in the table's order
    assert keyword_only[first : first + len(shown)] == shown


def test_linear_keywords_keep_their_order():
    names = list(inspect.signature(fastsce.linear_cross_entropy).parameters)
    assert names == ["input", "linear_weight", "target", *LINEAR_DEFAULTS]


def call(function, keywords):
    logits = np.array([[3.0, 4.0, 1.0], [2.0, 0.5, 0.5]])
    if inspect.isclass(function):
        return function(**keywords)(logits, [1, 0])
    if function.__name__.startswith("linear_"):
        return function(logits, np.eye(3), [1, 0], **keywords)
    return function(logits, [1, 0], **keywords)


@pytest.mark.parametrize("module, name", LOSS_FUNCTIONS, ids=IDS)
def test_an_unknown_keyword_is_python_s_type_error(module, name):
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
