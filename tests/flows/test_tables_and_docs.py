"""Every flow's table is consistent, every template exists in every locale, and docs/flows.md is current."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows import diagrams
from flows.base import END, HANDOFF
from flows.registry import FLOWS, FLOWS_BY_NAME
from intents import INTENT_LABELS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "data" / "templates"
QUESTION_FLOWS = ("wismo", "reschedule", "address", "cod", "cancel", "returns")


def test_every_intent_label_starts_a_flow() -> None:
    assert {i.value for i in FLOWS} >= set(INTENT_LABELS)


def test_every_transition_goes_to_a_known_state_and_every_question_can_be_asked_again() -> None:
    for flow in FLOWS_BY_NAME.values():
        known = set(flow.states) | {END, HANDOFF}
        for target in flow.start_goes_to:
            assert target in known, (flow.name, target)
        for name, state in flow.states.items():
            for target in state.goes_to:
                other_flow, _, other_state = target.partition(".")
                assert target in known or other_state in FLOWS_BY_NAME[other_flow].states, (flow.name, name, target)
            if flow.name in QUESTION_FLOWS:
                assert state.reprompt is not None, f"{flow.name}.{name} cannot be asked again after an interruption"
        assert flow.timeout.total_seconds() > 0


def _keys(locale: str) -> set[str]:
    keys: set[str] = set()
    for part in ("core.yml", "flows.yml"):
        keys |= set(yaml.safe_load((TEMPLATES / locale / part).read_text(encoding="utf-8")))
    return keys


def test_spanish_and_hinglish_have_every_flow_template() -> None:
    english = _keys("en")
    assert _keys("es") == english
    assert _keys("hi-Latn") == english


def test_docs_flows_md_is_generated_from_the_tables() -> None:
    committed = (ROOT / "docs" / "flows.md").read_text(encoding="utf-8")
    assert committed == diagrams.render(), "run: python -m flows.diagrams > docs/flows.md"
    for flow in FLOWS_BY_NAME.values():
        assert f"## {flow.name}" in committed
