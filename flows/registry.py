"""The explicit flow registry: which flow an intent starts. Adding a flow = one line here."""

from __future__ import annotations

from flows import (
    address,
    cancel,
    cod,
    csat,
    feedback,
    handoff,
    instructions,
    reschedule,
    returns,
    smalltalk,
    wismo,
)
from flows.base import Flow
from intents import Intent

FLOWS: dict[Intent, Flow] = {
    Intent.WISMO: wismo.FLOW,
    Intent.RESCHEDULE: reschedule.FLOW,
    Intent.CHANGE_ADDRESS: address.FLOW,
    Intent.COD_CONFIRM: cod.FLOW,
    Intent.CANCEL_ORDER: cancel.FLOW,
    Intent.RETURN_REFUND: returns.FLOW,
    Intent.HUMAN: handoff.FLOW,
    Intent.GREET: smalltalk.FLOW,
    Intent.THANKS: smalltalk.FLOW,
    Intent.AFFIRM: smalltalk.FLOW,
    Intent.DENY: smalltalk.FLOW,
    Intent.OUT_OF_SCOPE: smalltalk.FLOW,
    Intent.OPT_OUT: smalltalk.FLOW,
    Intent.CHOICE: smalltalk.FLOW,
}

FLOWS_BY_NAME: dict[str, Flow] = {flow.name: flow for flow in FLOWS.values()}
FLOWS_BY_NAME[feedback.FLOW.name] = feedback.FLOW  # opened proactively by the feedback journey, not by an intent
FLOWS_BY_NAME[instructions.FLOW.name] = instructions.FLOW  # opened by small talk on a delivery instruction
FLOWS_BY_NAME[csat.FLOW.name] = csat.FLOW  # opened by an agent's resolve (the one-tap CSAT question)
