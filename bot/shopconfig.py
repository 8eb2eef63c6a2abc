"""The shop's own configuration (`doorstep.yaml`, path from DOORSTEP_CONFIG).

Holds policy that flows and journeys read: support contact, reschedule limits,
return policy, quiet hours, …  Missing file = defaults. Flows receive the
merged mapping read-only through FlowContext.config.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "shop_name": "our shop",
    "support_contact": "our support team",
    "reschedule": {"max_days_ahead": 7, "non_delivery_weekdays": ["sunday"], "holidays": []},
    "returns": {"window_days": 7, "policy": "Unused items in their original packaging can be returned within 7 days of delivery."},
    "escalation": {"sla_minutes": 30, "ack_message": True},
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_shop_config(path: str | Path | None, *, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if path and Path(path).exists():
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        data = loaded
    merged = _merge(DEFAULTS, data)
    return _merge(merged, overrides or {})
