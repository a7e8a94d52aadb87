"""What help() shows: numpydoc sections for every public object, examples that run.

Every public function and class has Parameters (where it takes any), Returns (where
it returns anything), Raises and Examples; the examples are run here as doctests; the
signatures help() renders name no private alias (Reduction, _Floats).
"""

import doctest
import inspect

import numpy as np
import pytest

import fastsce

PUBLIC = [getattr(fastsce, name) for name in fastsce.__all__ if name != "__version__"]
#: the public objects that take no argument or return nothing
NO_PARAMETERS = {"get_num_threads"}
NO_RETURNS = {"set_num_threads", "CrossEntropyLoss"}
NO_RAISES = {"get_num_threads"}


def names(objects):
    return [obj.__name__ for obj in objects]


@pytest.mark.parametrize("obj", PUBLIC, ids=names(PUBLIC))
def test_numpydoc_sections(obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{obj.__name__} has no docstring"
    sections = {"Parameters", "Returns", "Raises", "Examples"}
    if obj.__name__ in NO_PARAMETERS:
        sections.discard("Parameters")
    if obj.__name__ in NO_RETURNS:
        sections.discard("Returns")
    if obj.__name__ in NO_RAISES:
        sections.discard("Raises")
    for section in sections:
        assert f"{section}\n{'-' * len(section)}" in doc, f"{obj.__name__}: no {section}"


@pytest.mark.parametrize("obj", PUBLIC, ids=names(PUBLIC))
def test_examples_run(obj):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(obj, obj.__name__, globs={"np": np})
    assert tests and any(test.examples for test in tests), f"{obj.__name__}: no example"
    for test in tests:
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0 and failed == 0, f"{obj.__name__}: {failed} of {attempted} failed"
    fastsce.set_num_threads(None)  # an example may set it


@pytest.mark.parametrize("obj", PUBLIC, ids=names(PUBLIC))
def test_signatures_name_no_private_alias(obj):
    callables = [obj.__init__, obj.__call__, obj.loss_and_grad] if inspect.isclass(obj) else [obj]
    for function in callables:
        rendered = str(inspect.signature(function))
        assert "Reduction" not in rendered and "_Floats" not in rendered, rendered
