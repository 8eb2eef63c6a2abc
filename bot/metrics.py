"""Prometheus metrics (`GET /metrics`). Labels never carry personal data."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INBOUND = Counter("doorstep_inbound_messages_total", "Inbound messages handled", ["channel", "intent"])
INBOUND_DUPLICATES = Counter("doorstep_inbound_duplicates_total", "Inbound provider retries dropped", ["channel"])
OUTBOUND = Counter("doorstep_outbound_total", "Outbox deliveries by result", ["kind", "channel", "result"])
ESCALATIONS = Counter("doorstep_escalations_total", "Conversations handed to a human", ["reason"])
FLOW_COMPLETIONS = Counter("doorstep_flow_turns_total", "Turns handled per flow", ["flow"])
HANDLE_SECONDS = Histogram("doorstep_inbound_handle_seconds", "Time to handle one inbound message",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
