"""The one exception this package raises for bad input."""


class CollectiveError(ValueError):
    """Bad arguments to a collective, detected before any message is sent.

    Raised identically on every rank whenever the problem is visible to every
    rank (an unknown name, an op that does not fit the dtype) or, with the
    check mode on (:func:`collectives.set_check`), whenever any one rank sees
    it (counts or dtypes that differ across ranks, a bad buffer on one rank).
    """
