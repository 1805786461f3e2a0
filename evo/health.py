"""Whether a search has gone non-finite, and the error that stops the run when it has.

A search distribution that collapses (a zero stdev: SNES and PGPE then divide
0 by 0) or explodes (a learning rate too large) turns its centre, and with it
every genome it samples, into NaN or infinity; from then on nothing it does
means anything. The driver (evo/driver.py) checks each generation before it
keeps anything of it, and stops at the first bad one, keeping the last
checkpoint and writing the last finite best genome.
"""

from __future__ import annotations

import torch

from evo.evals import EvalColumns

_DISTRIBUTION = (
    "likely cause: the search distribution collapsed or exploded (a zero or tiny stdev, "
    "or a learning rate too large for this genome)"
)


class SearchDiverged(RuntimeError):
    """The search turned non-finite; the message names the generation and the likely cause."""


def divergence(
    generation: int,
    values: torch.Tensor,
    evals: torch.Tensor,
    center: torch.Tensor | None,
    columns: EvalColumns,
) -> str | None:
    """Why generation `generation` (genomes `values`, `evals`, the search's `center`)
    cannot go on, or None when it can.

    A population some of whose evaluations are not finite goes on (they are
    scored worst and counted); one all of whose are stops, unless it is the
    single genome of the gradient optimiser, which skips a non-finite step.
    """
    if center is not None and not _all_finite(center):
        what = "the search distribution's centre is not finite"
    elif not (
        # The first genome is finite as a rule: then there is no need to read them all.
        values.shape[0] > 0
        and (_all_finite(values[0]) or bool(torch.isfinite(values).all(dim=1).any()))
    ):
        what = "every genome of the population is not finite"
    elif evals.shape[0] > 1 and not bool(columns.finite(evals).any()):
        return (
            f"generation {generation}: every evaluation of the population is not finite; "
            "likely cause: the decoded networks overflow (genomes far from the decoder's "
            f"initial scale) or {_DISTRIBUTION.removeprefix('likely cause: ')}"
        )
    else:
        return None
    return f"generation {generation}: {what}; {_DISTRIBUTION}"


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every element of `t` is finite.

    A finite sum settles it (a NaN or an infinity makes the sum non-finite) at
    a tenth of the cost of `isfinite` on 20,000 genes; only a sum that is not
    finite, which finite values can also give by overflowing, is checked
    element by element.
    """
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())
