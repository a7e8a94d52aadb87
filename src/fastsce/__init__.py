"""fastsce: fast, exact softmax cross-entropy for NumPy.

Public functions (class axis last):
    softmax, log_softmax, logsumexp, softmax_backward, log_softmax_backward,
    softmax_jacobian, cross_entropy, cross_entropy_with_grad, CrossEntropyLoss,
    linear_cross_entropy, linear_cross_entropy_with_grad (a linear layer and the loss,
    fused: the logits are never held whole)
plus ``fastsce.reference`` (the same functions in plain NumPy, the test oracle),
and the thread controls get_num_threads / set_num_threads.
"""

from ._config import get_num_threads, set_num_threads
from ._linear import linear_cross_entropy, linear_cross_entropy_with_grad
from ._loss import CrossEntropyLoss, cross_entropy, cross_entropy_with_grad
from ._show_config import show_config
from ._softmax import (
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax,
    softmax_backward,
    softmax_jacobian,
)
from ._version import __version__

__all__ = [
    "CrossEntropyLoss",
    "__version__",
    "cross_entropy",
    "cross_entropy_with_grad",
    "get_num_threads",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "set_num_threads",
    "show_config",
    "softmax",
    "softmax_backward",
    "softmax_jacobian",
]
