"""Holdout groups: which orders get no proactive message, so the shop can measure what Doorstep changed.

An order is assigned once, when it is created, from a hash of its order id and the shop's salt
(`holdout` in doorstep.yaml): the same order always lands in the same group, whichever process
creates it, and the assignment is stored on the order for its whole life (a later change of the
shares only affects new orders). Two independent draws:

* the **global** holdout (`holdout.share`): these orders get no proactive message of any journey;
* one draw per journey with a share (`holdout.journeys.<name>`): these orders get no message of
  that journey only.

Only proactive journey messages are withheld. Replies to the customer's own messages, opt-out
confirmations and legal messages never go through the journeys, so a holdout never touches them.
This module is pure: it never reads the database or sends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

TREATMENT = "treatment"
HOLDOUT = "holdout"
GROUPS = (TREATMENT, HOLDOUT)
MAX_SHARE = 0.5  # a larger holdout would withhold the product from most customers
DEFAULT_SALT = "doorstep-holdout"
_CODES = {TREATMENT: "t", HOLDOUT: "h"}
_NAMES = {code: name for name, code in _CODES.items()}


@dataclass(frozen=True)
class Assignment:
    """One order's groups. `group` is None when no experiment ran when the order was created."""

    group: str | None = None
    journeys: dict[str, str] = field(default_factory=dict)  # journey -> treatment | holdout

    def holds_out(self, journey: str) -> bool:
        return self.group == HOLDOUT or self.journeys.get(journey) == HOLDOUT


def draw(order_id: str, salt: str, unit: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, unit, order id): SHA-256, not Python's salted hash()."""
    digest = hashlib.sha256(f"{salt}\x1f{unit}\x1f{order_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(order_id: str, config: dict[str, Any]) -> Assignment:
    """The groups of a new order under the shop's `holdout` settings (no experiment: group None)."""
    section = config.get("holdout") or {}
    share = float(section.get("share") or 0.0)
    journey_shares = {name: float(value or 0.0) for name, value in (section.get("journeys") or {}).items()}
    if share <= 0 and not any(v > 0 for v in journey_shares.values()):
        return Assignment()
    salt = str(section.get("salt") or DEFAULT_SALT)
    group = HOLDOUT if draw(order_id, salt, "*") < share else TREATMENT
    journeys = {name: HOLDOUT if draw(order_id, salt, name) < value else TREATMENT
                for name, value in sorted(journey_shares.items()) if value > 0}
    return Assignment(group, journeys)


def encode_journeys(journeys: dict[str, str]) -> str:
    """The stored form, `,delayed=t,shipped=h,`: one LIKE finds an arm in SQL on every backend."""
    if not journeys:
        return ""
    return "," + ",".join(f"{name}={_CODES[arm]}" for name, arm in sorted(journeys.items())) + ","


def decode_journeys(stored: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (stored or "").split(","):
        name, _, code = part.partition("=")
        if name and code in _NAMES:
            out[name] = _NAMES[code]
    return out


def journey_pattern(journey: str, arm: str) -> str:
    """The LIKE pattern of one journey's arm in the stored form."""
    return f"%,{journey}={_CODES[arm]},%"


def assignment_of(group: str | None, stored_journeys: str | None) -> Assignment:
    return Assignment(group, decode_journeys(stored_journeys))
