"""Divergence: the test for NaN or inf, the exit code of a run that diverged, and what its message says.

The parameters are bitwise the same on every rank (each applies the same
update to the same all-reduced gradient), and a NaN or inf in any rank's
gradient reaches every rank's sum, so testing the parameters after each
update stops every rank at the same step with no message between them.
The cost is one pass over the parameters a step (``np.isfinite``, dev VM:
3 us for the 10^4 parameters of the digits MLP, 0.1 % of a step of 64
samples and 2 % of a step of 4; 0.2 ms, 0.2 %, for 4 x 10^5 parameters).
A non-finite loss with finite parameters (possible only if the logits
overflow to -inf) is caught at the end of its epoch, where the ranks
already sum the loss.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIVERGED", "finite", "message"]

DIVERGED = 3
"""The exit code of a run stopped because its loss or parameters went NaN or inf (2 is for bad input)."""


def finite(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is finite (no NaN, no inf)."""
    return bool(np.isfinite(a).all())


def message(what: str, step: int, epoch: int, lr: float, checkpoint: str | None, saved_step: int | None) -> str:
    """Why the run stopped and what to do, for rank 0 to print.

    Parameters
    ----------
    what : str
        What went non-finite, as a clause (``"the parameters hold NaN or inf"``).
    step, epoch : int
        The global step and the 1-based epoch where it was seen.
    lr : float
        ``--lr`` as given.
    checkpoint : str or None
        ``--checkpoint``; ``saved_step``: the step of the last checkpoint this run wrote (None: none yet).
    """
    if checkpoint is None:
        kept = "no checkpoint was asked for"
    elif saved_step is None:
        kept = f"this run wrote no checkpoint to {checkpoint}"
    else:
        kept = f"{checkpoint} (step {saved_step}) holds the last finite state"
    return (f"training diverged at step {step} (epoch {epoch}): {what}; {kept}. "
            f"Try a lower --lr ({lr:g}), --warmup-epochs, or check the data")
