"""The explicit flow registry: which flow an intent starts. Adding a flow = one line here."""

from __future__ import annotations

from flows import feedback, handoff, smalltalk, wismo
from flows.base import Flow
from intents import Intent

FLOWS: dict[Intent, Flow] = {
    Intent.WISMO: wismo.FLOW,
    Intent.HUMAN: handoff.FLOW,
    Intent.GREET: smalltalk.FLOW,
    Intent.THANKS: smalltalk.FLOW,
    Intent.AFFIRM: smalltalk.FLOW,
    Intent.DENY: smalltalk.FLOW,
    Intent.OUT_OF_SCOPE: smalltalk.FLOW,
    # Until their own flows land, these go to a person rather than being ignored.
    Intent.RESCHEDULE: handoff.FLOW,
    Intent.CHANGE_ADDRESS: handoff.FLOW,
    Intent.COD_CONFIRM: handoff.FLOW,
    Intent.CANCEL_ORDER: handoff.FLOW,
    Intent.RETURN_REFUND: handoff.FLOW,
    Intent.OPT_OUT: smalltalk.FLOW,
}

FLOWS_BY_NAME: dict[str, Flow] = {flow.name: flow for flow in FLOWS.values()}
FLOWS_BY_NAME[feedback.FLOW.name] = feedback.FLOW  # opened proactively by the feedback journey, not by an intent
