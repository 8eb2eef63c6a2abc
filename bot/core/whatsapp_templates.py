"""The WhatsApp templates of proactive messages (data/whatsapp_templates.yml): one per message kind and locale.

Outside the 24-hour window WhatsApp takes only approved templates. Each proactive journey message kind
(`journey.shipped`, `journey.order_confirmed_cod`, …) names one here, per locale Doorstep ships, with
fixed wording, named variables and, where the journey offers a choice, quick-reply buttons whose tap
payload is the one the same choice has inside the window. This module loads and checks the file (a
clear error naming the template, locale and problem), turns a locale's body into WhatsApp's
positional form (`{{order_id}}` -> `{{1}}` in the order the names appear), renders the variables'
values from a journey's own variables, and cleans a value as WhatsApp requires (never empty; no
newline, tab or run of more than four spaces). Pure: no database, no provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.core import replies
from intents.errors import DoorstepError

PATH = replies.DATA_DIR / "whatsapp_templates.yml"
LOCALES = tuple(replies.BABEL_LOCALES)  # the locales Doorstep ships: every template needs each one
DEFAULT_LOCALE = replies.DEFAULT_LOCALE  # the shop's default: used when the customer's template is not approved
CATEGORIES = ("UTILITY", "MARKETING")
MAX_BUTTONS = 3
BUTTON_TITLE = 20
EMPTY = "-"  # what a variable says when it has neither a value nor a fallback
_NAME = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_VARIABLE = re.compile(r"\{\{[^}]*\}\}")


class TemplateDataError(DoorstepError, ValueError):
    """data/whatsapp_templates.yml is not valid; the message names the template, locale and problem."""


def sanitize(value: Any, fallback: str = EMPTY) -> str:
    """A value WhatsApp accepts in a template variable: whitespace runs (newlines, tabs, long runs of
    spaces) become one space, and an empty value becomes `fallback` (itself cleaned, never empty)."""
    text = " ".join(str(value if value is not None else "").split())
    if text:
        return text
    cleaned = " ".join(str(fallback or "").split())
    return cleaned or EMPTY


@dataclass(frozen=True)
class Variable:
    name: str
    value: str  # a Jinja expression over the journey's variables
    sample: str
    fallback: Mapping[str, str]  # per locale; may be empty


@dataclass(frozen=True)
class Button:
    id: str  # the payload a tap sends back (`/btn:affirm:yes`)
    title: Mapping[str, str]  # per locale


@dataclass(frozen=True)
class JourneyTemplate:
    kind: str  # the message kind: the reply template key the journey renders
    category: str  # UTILITY | MARKETING (what is asked; WhatsApp may re-file it)
    variables: Mapping[str, Variable]
    body: Mapping[str, str]  # locale -> wording with {{name}}
    buttons: tuple[Button, ...]
    languages: Mapping[str, str]

    def content_name(self, locale: str) -> str:
        """`doorstep_shipped_en`, `doorstep_order_confirmed_cod_hi_latn`: the Content template's name."""
        kind = self.kind.removeprefix("journey.").replace(".", "_")
        return f"doorstep_{kind}_{locale.lower().replace('-', '_')}"

    def order(self, locale: str) -> list[str]:
        """The variable names in the order they appear in `locale`'s body: {{1}}, {{2}}, …"""
        seen: list[str] = []
        for name in _NAME.findall(self.body[locale]):
            if name not in seen:
                seen.append(name)
        return seen

    def positional_body(self, locale: str) -> str:
        numbers = {name: str(i) for i, name in enumerate(self.order(locale), start=1)}
        return _NAME.sub(lambda m: "{{" + numbers[m.group(1)] + "}}", self.body[locale])

    def samples(self, locale: str) -> dict[str, str]:
        return {str(i): self.variables[name].sample for i, name in enumerate(self.order(locale), start=1)}

    def types(self, locale: str) -> dict[str, Any]:
        """The Content API `types`: quick-reply buttons when the journey offers a choice, else text."""
        body = self.positional_body(locale)
        if not self.buttons:
            return {"twilio/text": {"body": body}}
        return {"twilio/quick-reply": {"body": body, "actions": [
            {"type": "QUICK_REPLY", "title": b.title[locale], "id": b.id} for b in self.buttons]}}

    def session_buttons(self, locale: str | None) -> list[tuple[str, str]]:
        """The buttons as (title, payload) in `locale`, for the same question inside the window."""
        wanted = replies.normalise_locale(locale)
        wanted = wanted if wanted in LOCALES else DEFAULT_LOCALE
        return [(b.title[wanted], b.id) for b in self.buttons]

    def language(self, locale: str) -> str:
        return self.languages.get(locale, locale)

    def positional(self, values: Mapping[str, Any], locale: str) -> dict[str, str]:
        """ContentVariables for `locale`: each named value at its number, cleaned (a missing or empty
        one says the variable's fallback in that locale)."""
        return {str(i): sanitize(values.get(name), self.variables[name].fallback.get(locale, EMPTY))
                for i, name in enumerate(self.order(locale), start=1)}

    def render_values(self, locale: str, variables: Mapping[str, Any], today: date | None = None) -> dict[str, str]:
        """Each variable's value, rendered from the journey's own variables in `locale` (empty when the
        value cannot be made from them; `positional` puts the fallback there)."""
        found: dict[str, str] = {}
        for name, variable in self.variables.items():
            try:
                found[name] = " ".join(replies.render_source(variable.value, locale, today=today, **variables).split())
            except Exception:  # a value the journey cannot give (e.g. no item): the fallback says it
                found[name] = ""
        return found


def _fail(where: str, problem: str) -> TemplateDataError:
    return TemplateDataError(f"{PATH.name}: {where}: {problem}")


def _per_locale(raw: Any, where: str, *, required: bool) -> dict[str, str]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        raise _fail(where, f"must map each locale ({', '.join(LOCALES)}) to text")
    unknown = sorted(set(map(str, raw)) - set(LOCALES))
    if unknown:
        raise _fail(where, f"unknown locale {unknown[0]!r} (known: {', '.join(LOCALES)})")
    missing = [locale for locale in LOCALES if not str(raw.get(locale) or "").strip()]
    if missing:
        raise _fail(where, f"no text for locale {missing[0]}")
    return {str(k): str(v) for k, v in raw.items()}


def _check_body(kind: str, locale: str, body: str, declared: Mapping[str, Variable]) -> None:
    where = f"{kind}.body.{locale}"
    for placeholder in _ANY_VARIABLE.findall(body):
        if not _NAME.fullmatch(placeholder):
            raise _fail(where, f"{placeholder} is not a variable name (write {{{{order_id}}}})")
    names = _NAME.findall(body)
    for name in names:
        if name not in declared:
            raise _fail(where, f"{{{{{name}}}}} is not among the template's variables ({', '.join(declared)})")
    unused = [name for name in declared if name not in names]
    if unused:
        raise _fail(where, f"variable {unused[0]!r} is declared but not used in this locale")
    text = body.strip()
    if _NAME.match(text) or re.search(r"\{\{[^}]*\}\}[.!?]?$", text):
        raise _fail(where, "may not start or end with a variable (WhatsApp refuses it)")
    if re.search(r"\}\}\s*\{\{", text):
        raise _fail(where, "two variables may not touch (WhatsApp refuses it)")
    if "\n" in text or "\t" in text:
        raise _fail(where, "must be one line")


def parse(raw: Any) -> dict[str, JourneyTemplate]:
    """Check and build the templates from the loaded YAML (errors name the template and locale)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("templates"), dict):
        raise _fail("top level", "needs `templates:` (kind -> template)")
    languages = raw.get("languages") or {}
    if not isinstance(languages, dict) or sorted(map(str, languages)) != sorted(LOCALES):
        raise _fail("languages", f"must give WhatsApp's language for each locale ({', '.join(LOCALES)})")
    found: dict[str, JourneyTemplate] = {}
    for kind, spec in raw["templates"].items():
        kind = str(kind)
        if not isinstance(spec, dict):
            raise _fail(kind, "must be a mapping (category, variables, body)")
        unknown = sorted(set(spec) - {"category", "variables", "body", "buttons"})
        if unknown:
            raise _fail(kind, f"unknown setting {unknown[0]!r} (known: body, buttons, category, variables)")
        category = str(spec.get("category") or "").upper()
        if category not in CATEGORIES:
            raise _fail(f"{kind}.category", f"must be one of {', '.join(CATEGORIES)}")
        variables: dict[str, Variable] = {}
        for name, item in (spec.get("variables") or {}).items():
            where = f"{kind}.variables.{name}"
            if not _NAME.fullmatch("{{" + str(name) + "}}"):
                raise _fail(where, "a variable name is letters, digits and _")
            if not isinstance(item, dict) or not str(item.get("value") or "").strip():
                raise _fail(where, "needs `value` (a Jinja expression over the journey's variables)")
            sample = sanitize(item.get("sample"), "")
            if sample == EMPTY:
                raise _fail(where, "needs a `sample` (WhatsApp reviews the template with it)")
            fallback = _per_locale(item.get("fallback"), f"{where}.fallback", required=False)
            variables[str(name)] = Variable(str(name), str(item["value"]), sample, fallback)
        if not variables:
            raise _fail(kind, "needs at least one variable (a template without values is the same for every order)")
        body = _per_locale(spec.get("body"), f"{kind}.body", required=True)
        for locale, text in body.items():
            _check_body(kind, locale, text, variables)
        buttons: list[Button] = []
        raw_buttons = spec.get("buttons") or []
        if not isinstance(raw_buttons, list) or len(raw_buttons) > MAX_BUTTONS:
            raise _fail(f"{kind}.buttons", f"must be a list of at most {MAX_BUTTONS} buttons")
        for i, button in enumerate(raw_buttons, start=1):
            where = f"{kind}.buttons[{i}]"
            if not isinstance(button, dict) or not str(button.get("id") or "").startswith("/btn:"):
                raise _fail(where, "needs an `id`, the payload a tap sends back (/btn:affirm:yes)")
            titles = _per_locale(button.get("title"), f"{where}.title", required=True)
            long = [locale for locale, title in titles.items() if len(title) > BUTTON_TITLE]
            if long:
                raise _fail(f"{where}.title.{long[0]}", f"longer than {BUTTON_TITLE} characters")
            buttons.append(Button(str(button["id"]), titles))
        found[kind] = JourneyTemplate(kind, category, variables, body, tuple(buttons),
                                      {str(k): str(v) for k, v in languages.items()})
    return found


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, JourneyTemplate]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateDataError(f"{path.name}: cannot be read: {exc}") from None
    return parse(raw)


def templates(path: Path | None = None) -> dict[str, JourneyTemplate]:
    """Every proactive message kind's template (loaded once, checked at load)."""
    return _load(path or PATH)


def for_kind(kind: str | None) -> JourneyTemplate | None:
    return templates().get(kind or "")


def by_content_name() -> dict[str, tuple[JourneyTemplate, str]]:
    """Content template name -> (its template, locale)."""
    return {t.content_name(locale): (t, locale) for t in templates().values() for locale in LOCALES}
