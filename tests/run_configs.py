"""Small run configs for the tests, changed by path: changed(base, algorithm__name="ga")."""

from __future__ import annotations

import copy
from typing import Any


def changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with each `a__b__c=value` set at raw["a"]["b"]["c"]."""
    raw = copy.deepcopy(base)
    for path, value in changes.items():
        *head, last = path.split("__")
        d = raw
        for k in head:
            d = d.setdefault(k, {})
        d[last] = value
    return raw
