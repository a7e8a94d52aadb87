"""pytest fixtures shared by the test modules (helpers are in _helpers.py)."""

import pytest

import fastsce


@pytest.fixture
def restore_threads():
    """Restores fastsce's thread setting after the test."""
    before = fastsce._config._num_threads  # None means "the default", which the
    yield  # public getter cannot tell apart
    fastsce.set_num_threads(before)
