"""The shop's own configuration (`doorstep.yaml`, path from DOORSTEP_CONFIG).

Holds policy that flows and journeys read: support contact, reschedule limits,
return policy, review link, the proactive journeys (delays, templates,
validity, priority), quiet hours and frequency caps. Missing file = defaults.
Flows receive the merged mapping read-only through FlowContext.config.

Validation is strict where a typo would silently change behaviour (unknown
keys, durations, quiet hours, journey names): a `ConfigError` names the file,
the line and the problem. This module never reads the database or sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import yaml

from intents.errors import DoorstepError

JOURNEY_NAMES = (
    "order_confirmed", "shipped", "out_for_delivery", "delayed", "failed_attempt", "delivered",
    "feedback", "cod_reminder", "cod_escalation", "reorder", "address_clarification",
)
PRIORITIES = ("transactional", "marketing")
CHANNELS = ("preferred", "sms", "whatsapp", "telegram", "email", "viber")


def _journey(delay: str = "0m", valid_for: str = "24h", priority: str = "transactional", **extra: Any) -> dict[str, Any]:
    return {"enabled": True, "delay": delay, "valid_for": valid_for, "priority": priority, "channel": "preferred", **extra}


# Empty wording (shop_name, support_contact, returns.policy) = the customer's language's
# default from data/templates/<locale>/words.yml, so no customer reads English "our shop".
DEFAULTS: dict[str, Any] = {
    "shop_name": "",
    "support_contact": "",
    "review_link": "",
    "reschedule": {"max_days_ahead": 7, "non_delivery_weekdays": ["sunday"], "holidays": []},
    "returns": {"window_days": 7, "policy": ""},
    "escalation": {"sla_minutes": 30, "ack_message": True},
    # The agent inbox: quick replies per locale (added to data/quick_replies.yml), the approved WhatsApp
    # templates an agent may pick outside the 24-hour window, and the one-tap CSAT question after a resolve.
    "inbox": {"quick_replies": {}, "whatsapp_templates": [], "csat": False},
    "contact_policy": {
        "quiet_hours": "21:00-08:00",
        "caps": {"per_order_per_day": 4, "marketing_per_customer_per_week": 1},
    },
    # The send planner (bot.core.planner): prices per message, India DLT template ids, limits.
    "messaging": {
        "india_dlt": {"required": False, "templates": {}},
        "planner": {"max_price_per_message": None, "min_gap_per_recipient": "0m"},
        "pricing": {
            # Indicative 2026 list prices in USD; replace them with your own rate cards. WhatsApp: Meta's
            # per-message rate for a template by recipient country and category (service messages and
            # utility templates inside the 24-hour window are free), plus the provider's fee per message.
            "currency": "USD",
            "whatsapp_fee": 0.005,
            "whatsapp": {
                "IN": {"marketing": 0.0103, "utility": 0.0014},
                "US": {"marketing": 0.0250, "utility": 0.0034},
                "BR": {"marketing": 0.0625, "utility": 0.0068},
                "MX": {"marketing": 0.0305, "utility": 0.0085},
                "ES": {"marketing": 0.0509, "utility": 0.0166},
                "GB": {"marketing": 0.0529, "utility": 0.0220},
                "*": {"marketing": 0.0604, "utility": 0.0077},
            },
            # SMS per outbound segment-1 message by country, provider list price.
            "sms": {"IN": 0.0832, "US": 0.0083, "BR": 0.0750, "MX": 0.0470, "ES": 0.0792, "GB": 0.0463,
                    "*": 0.0500},
            "email": 0.0,  # flat per message, for channels without a country table
            "viber": 0.0,
        },
    },
    "journeys": {
        "order_confirmed": _journey(valid_for="24h"),
        "shipped": _journey(valid_for="48h"),
        "out_for_delivery": _journey(valid_for="12h"),
        "delayed": _journey(valid_for="24h"),
        "failed_attempt": _journey(valid_for="24h"),
        "delivered": _journey(valid_for="24h"),
        "feedback": _journey(delay="3d", valid_for="2d", priority="marketing", reply_window="2d"),
        "cod_reminder": _journey(delay="2h", valid_for="12h"),
        "cod_escalation": _journey(delay="12h"),
        "reorder": _journey(valid_for="3d", priority="marketing"),
        "address_clarification": _journey(valid_for="24h", reply_window="24h"),
    },
    # Measuring Doorstep (bot.core.holdout, bot.reports): who gets no proactive messages, and what a message costs.
    "holdout": {"salt": "", "share": 0.0, "journeys": {}},
    # The cost per order comes from `messaging.pricing` (the prices the send planner records per message).
    "outcomes": {"minimum_effect": 0.2, "maturity": "14d"},
}
# Settings that moved: still read, so an old doorstep.yaml loads, when they say nothing the new place does not.
MOVED_OUTCOMES = ("currency", "prices")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ConfigError(DoorstepError, ValueError):
    """An invalid doorstep.yaml; `problems` are (line, message), lines 1-based (0 = unknown)."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = sorted(problems)
        problems = self.problems
        super().__init__("\n".join(f"{path}:{line}: {msg}" if line else f"{path}: {msg}" for line, msg in problems))


def parse_duration(value: Any) -> timedelta:
    """'30m', '2h', '3d', '1w' (also '90s') -> timedelta; anything else raises ValueError."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration (write it like 30m, 2h, 3d or 1w)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # wraps midnight, e.g. 21:00-08:00


def parse_quiet_hours(value: Any) -> QuietHours | None:
    """'21:00-08:00' -> QuietHours; '' or None -> off; anything else raises ValueError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = str(value).split("-") if isinstance(value, str) else []
    if len(parts) != 2 or not all(_CLOCK.match(p.strip()) for p in parts):
        raise ValueError(f"{value!r} is not a quiet-hours range (write it like \"21:00-08:00\", or \"\" for none)")
    start, end = (time(int(p.strip().split(":")[0]), int(p.strip().split(":")[1])) for p in parts)
    if start == end:
        raise ValueError(f"{value!r}: start and end are equal (use \"\" to turn quiet hours off)")
    return QuietHours(start, end)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- validation


def _lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map every key path of the YAML document to its 1-based line."""
    found: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            found[path] = key_node.start_mark.line + 1
            found.update(_lines(value_node, path))
    return found


def _validate(data: dict[str, Any], lines: dict[tuple[str, ...], int]) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []

    def bad(path: tuple[str, ...], message: str) -> None:
        line = 0
        for cut in range(len(path), 0, -1):  # the nearest line we know
            if path[:cut] in lines:
                line = lines[path[:cut]]
                break
        problems.append((line, f"{'.'.join(path)}: {message}"))

    for key in data:
        if key not in DEFAULTS:
            bad((key,), f"unknown setting (known: {', '.join(sorted(DEFAULTS))})")
    for section in ("reschedule", "returns", "escalation", "contact_policy", "journeys", "inbox"):
        if section in data and not isinstance(data[section], dict):
            bad((section,), "must be a mapping")
    for key in ("shop_name", "support_contact", "review_link"):
        if key in data and not isinstance(data[key], str):
            bad((key,), "must be a string")
    review = data.get("review_link")
    if isinstance(review, str) and review and not review.startswith(("https://", "http://")):
        bad(("review_link",), "must be an http(s) URL")

    inbox = data.get("inbox")
    if isinstance(inbox, dict):
        problems.extend(_inbox_problems(inbox, bad))

    policy = data.get("contact_policy")
    if isinstance(policy, dict):
        for key in policy:
            if key not in DEFAULTS["contact_policy"]:
                bad(("contact_policy", key), "unknown setting (known: caps, quiet_hours)")
        if "quiet_hours" in policy:
            try:
                parse_quiet_hours(policy["quiet_hours"])
            except ValueError as exc:
                bad(("contact_policy", "quiet_hours"), str(exc))
        caps = policy.get("caps")
        if caps is not None and not isinstance(caps, dict):
            bad(("contact_policy", "caps"), "must be a mapping")
        elif isinstance(caps, dict):
            for key, value in caps.items():
                if key not in DEFAULTS["contact_policy"]["caps"]:
                    bad(("contact_policy", "caps", key),
                        "unknown cap (known: marketing_per_customer_per_week, per_order_per_day)")
                elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    bad(("contact_policy", "caps", key), f"must be a whole number >= 0, not {value!r}")

    _validate_messaging(data.get("messaging"), bad)

    journeys = data.get("journeys")
    if isinstance(journeys, dict):
        for name, spec in journeys.items():
            path = ("journeys", str(name))
            if name not in JOURNEY_NAMES:
                bad(path, f"unknown journey (known: {', '.join(JOURNEY_NAMES)})")
                continue
            if isinstance(spec, bool):  # `shipped: false` is a handy shorthand
                continue
            if not isinstance(spec, dict):
                bad(path, "must be a mapping (or true/false)")
                continue
            allowed = set(DEFAULTS["journeys"][name]) | {"template"}
            for key, value in spec.items():
                where = (*path, str(key))
                if key not in allowed:
                    bad(where, f"unknown setting (known: {', '.join(sorted(allowed))})")
                elif key in {"delay", "valid_for", "reply_window"}:
                    try:
                        parse_duration(value)
                    except ValueError as exc:
                        bad(where, str(exc))
                elif key == "enabled" and not isinstance(value, bool):
                    bad(where, f"must be true or false, not {value!r}")
                elif key == "priority" and value not in PRIORITIES:
                    bad(where, f"must be one of {', '.join(PRIORITIES)}, not {value!r}")
                elif key == "channel" and value not in CHANNELS:
                    bad(where, f"must be one of {', '.join(CHANNELS)}, not {value!r}")
                elif key == "template":
                    from bot.core.replies import has_template

                    if not isinstance(value, str) or not has_template(value):
                        bad(where, f"no reply template named {value!r} in data/templates/")
    _validate_measurement(data, bad)
    return problems


def _validate_messaging(section: Any, bad: Any) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        bad(("messaging",), "must be a mapping")
        return
    for key, value in section.items():
        if key not in DEFAULTS["messaging"]:
            bad(("messaging", key), f"unknown setting (known: {', '.join(sorted(DEFAULTS['messaging']))})")
        elif not isinstance(value, dict):
            bad(("messaging", key), "must be a mapping")
    dlt = section.get("india_dlt")
    if isinstance(dlt, dict):
        for key in dlt:
            if key not in DEFAULTS["messaging"]["india_dlt"]:
                bad(("messaging", "india_dlt", key), "unknown setting (known: required, templates)")
        ids = dlt.get("templates", {})
        if not isinstance(ids, dict) or not all(re.fullmatch(r"\d{10,25}", str(v)) for v in ids.values()):
            bad(("messaging", "india_dlt", "templates"), "must map a reply template (or *) to a DLT template id "
                                                          "of 10-25 digits")
    limits = section.get("planner")
    if isinstance(limits, dict):
        for key, value in limits.items():
            if key not in DEFAULTS["messaging"]["planner"]:
                bad(("messaging", "planner", key), "unknown setting (known: max_price_per_message, "
                                                   "min_gap_per_recipient)")
            elif key == "min_gap_per_recipient":
                try:
                    parse_duration(value)
                except ValueError as exc:
                    bad(("messaging", "planner", key), str(exc))
            elif value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                bad(("messaging", "planner", key), f"must be a price >= 0 or empty, not {value!r}")
    pricing = section.get("pricing")
    if isinstance(pricing, dict):
        def prices(value: Any, path: tuple[str, ...]) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    prices(inner, (*path, str(key)))
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                bad(path, f"must be a price >= 0, not {value!r}")

        for key, value in pricing.items():
            if key == "currency":
                if not (isinstance(value, str) and re.fullmatch(r"[A-Z]{3}", value)):
                    bad(("messaging", "pricing", key), "must be a 3-letter currency code")
            elif key in DEFAULTS["messaging"]["pricing"]:
                prices(value, ("messaging", "pricing", key))
            else:
                bad(("messaging", "pricing", key), "unknown setting (known: currency, email, sms, viber, whatsapp, "
                                                   "whatsapp_fee)")


def _inbox_problems(inbox: dict[str, Any], bad: Any) -> list[tuple[int, str]]:
    """`inbox:` — quick_replies (locale: [{label, text}]), whatsapp_templates ([{kind, label, text}]), csat."""
    for key in inbox:
        if key not in DEFAULTS["inbox"]:
            bad(("inbox", key), "unknown setting (known: csat, quick_replies, whatsapp_templates)")
    if "csat" in inbox and not isinstance(inbox["csat"], bool):
        bad(("inbox", "csat"), f"must be true or false, not {inbox['csat']!r}")
    quick = inbox.get("quick_replies")
    if quick is not None and not isinstance(quick, dict):
        bad(("inbox", "quick_replies"), "must map a locale (en, es, hi-Latn) to a list of {label, text}")
    elif isinstance(quick, dict):
        for locale, items in quick.items():
            if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("label") and i.get("text")
                                                      for i in items):
                bad(("inbox", "quick_replies", str(locale)), "must be a list of {label, text}")
    templates = inbox.get("whatsapp_templates")
    if templates is not None and (not isinstance(templates, list) or not all(
            isinstance(t, dict) and t.get("kind") and t.get("text") for t in templates)):
        bad(("inbox", "whatsapp_templates"), "must be a list of {kind, label, text}")
    return []


def _share(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 0.5


def _validate_measurement(data: dict[str, Any], bad: Callable[[tuple[str, ...], str], None]) -> None:
    """`holdout` and `outcomes`: shares in [0, 0.5], journey names, a price table of numbers >= 0."""
    holdout = data.get("holdout")
    if holdout is not None and not isinstance(holdout, dict):
        bad(("holdout",), "must be a mapping")
    elif isinstance(holdout, dict):
        for key, value in holdout.items():
            if key not in DEFAULTS["holdout"]:
                bad(("holdout", str(key)), "unknown setting (known: journeys, salt, share)")
            elif key == "salt" and not isinstance(value, str):
                bad(("holdout", "salt"), "must be a string")
            elif key == "share" and not _share(value):
                bad(("holdout", "share"), f"must be a share between 0 and 0.5, not {value!r}")
            elif key == "journeys" and not isinstance(value, dict):
                bad(("holdout", "journeys"), "must be a mapping of journey: share")
            elif key == "journeys":
                for name, share in value.items():
                    if name not in JOURNEY_NAMES:
                        bad(("holdout", "journeys", str(name)), f"unknown journey (known: {', '.join(JOURNEY_NAMES)})")
                    elif not _share(share):
                        bad(("holdout", "journeys", str(name)), f"must be a share between 0 and 0.5, not {share!r}")
    outcomes = data.get("outcomes")
    if outcomes is not None and not isinstance(outcomes, dict):
        bad(("outcomes",), "must be a mapping")
    elif isinstance(outcomes, dict):
        for key, value in outcomes.items():
            where = ("outcomes", str(key))
            if key in MOVED_OUTCOMES:
                _moved_outcomes(data, key, value, where, bad)
            elif key not in DEFAULTS["outcomes"]:
                bad(where, "unknown setting (known: maturity, minimum_effect)")
            elif key == "maturity":
                try:
                    parse_duration(value)
                except ValueError as exc:
                    bad(where, str(exc))
            elif key == "minimum_effect" and (isinstance(value, bool) or not isinstance(value, int | float)
                                              or not 0 < value < 1):
                bad(where, f"must be a relative change between 0 and 1 (0.2 = 20 %), not {value!r}")


def _moved_outcomes(data: dict[str, Any], key: str, value: Any, where: tuple[str, ...],
                    bad: Callable[[tuple[str, ...], str], None]) -> None:
    """`outcomes.prices` and `outcomes.currency` were the report's own price table; the send planner's
    (`messaging.pricing`) is now the only one. An empty table, or the planner's currency, loads as before
    (and is ignored); anything else would price messages twice, differently, so it is refused with where
    to put it (docs/outcomes.md)."""
    messaging = data.get("messaging")
    pricing = messaging.get("pricing") if isinstance(messaging, dict) else None
    currency = pricing.get("currency") if isinstance(pricing, dict) and "currency" in pricing else \
        DEFAULTS["messaging"]["pricing"]["currency"]
    if key == "prices" and value not in (None, {}):
        bad(where, "moved: message prices now come from messaging.pricing, the send planner's table, whose price "
                   "each message records (docs/outcomes.md). Put SMS prices under messaging.pricing.sms "
                   "(country: price, '*' for the default) and WhatsApp's under messaging.pricing.whatsapp_fee "
                   "and messaging.pricing.whatsapp, then delete outcomes.prices")
    elif key == "currency" and value != currency:
        bad(where, f"moved: the report's currency is messaging.pricing.currency ({currency}); set it there "
                   "and delete outcomes.currency")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse and validate one doorstep.yaml; raises ConfigError naming file, line and problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, [(0, f"cannot read the file ({exc.strerror})")]) from None
    except UnicodeDecodeError:
        raise ConfigError(name, [(0, "is not UTF-8 text")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(name, [((mark.line + 1) if mark else 0, f"not valid YAML: {exc.problem}")]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(name, [(1, "the top level must be a mapping (key: value lines)")])
    problems = _validate(loaded, _lines(node))
    if problems:
        raise ConfigError(name, problems)
    return loaded


def load_shop_config(path: str | Path | None, *, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if path and Path(path).exists():
        data = read_config_file(path)
    if overrides:
        problems = _validate(overrides, {})
        if problems:
            raise ConfigError("<overrides>", problems)
    merged = _merge(_merge(DEFAULTS, data), overrides or {})
    for name, spec in list(merged["journeys"].items()):
        if isinstance(spec, bool):
            merged["journeys"][name] = {**DEFAULTS["journeys"][name], "enabled": spec}
    return merged
