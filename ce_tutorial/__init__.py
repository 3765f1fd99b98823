"""ce_tutorial: the cross-entropy loss from first principles.

The companion package of the ce-tutorial book. Every function takes
array-likes (Python lists included), never modifies its inputs, and rejects
bad input with a ``ValueError`` or ``TypeError`` that names the argument and
the offending value.

- the softmax family: :func:`softmax`, :func:`log_softmax`, :func:`logsumexp`;
- losses on probabilities: :func:`likelihood`, :func:`negative_log_likelihood`,
  :func:`cross_entropy`;
- losses on logits: :func:`cross_entropy_from_logits`, :func:`cross_entropy_grad`;
- binary and multi-label: :func:`sigmoid`, :func:`log_sigmoid`,
  :func:`binary_cross_entropy`, :func:`binary_cross_entropy_from_logits`,
  :func:`binary_cross_entropy_grad`;
- helpers: :func:`one_hot`, :func:`entropy`, :func:`kl_divergence`;
- calibration: :func:`expected_calibration_error`, :func:`reliability_curve`,
  :func:`classwise_calibration_error`, :func:`fit_temperature`;
- distillation and contrastive learning: :func:`distillation_loss`,
  :func:`distillation_grad`, :func:`info_nce`;
- data: :func:`load_digits_split`, the digits split the chapters train on
  (needs scikit-learn, imported on call);
- the fused language-model head: :func:`linear_cross_entropy`, the loss of
  ``features @ weight.T`` and its gradients without the full logits;
- large inputs are streamed in blocks of rows, on :func:`get_num_threads`
  threads (see :func:`set_num_threads`).
"""

from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_from_logits,
    binary_cross_entropy_grad,
    log_sigmoid,
    sigmoid,
)
from ._calibration import (
    classwise_calibration_error,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)
from ._contrastive import info_nce
from ._datasets import load_digits_split
from ._distillation import distillation_grad, distillation_loss
from ._fused import linear_cross_entropy
from ._information import entropy, kl_divergence
from ._losses import (
    cross_entropy,
    cross_entropy_from_logits,
    cross_entropy_grad,
    likelihood,
    negative_log_likelihood,
    one_hot,
)
from ._softmax import log_softmax, logsumexp, softmax
from ._streaming import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_from_logits",
    "binary_cross_entropy_grad",
    "classwise_calibration_error",
    "cross_entropy",
    "cross_entropy_from_logits",
    "cross_entropy_grad",
    "distillation_grad",
    "distillation_loss",
    "entropy",
    "expected_calibration_error",
    "fit_temperature",
    "get_num_threads",
    "info_nce",
    "kl_divergence",
    "likelihood",
    "linear_cross_entropy",
    "load_digits_split",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "negative_log_likelihood",
    "one_hot",
    "reliability_curve",
    "set_num_threads",
    "sigmoid",
    "softmax",
]
