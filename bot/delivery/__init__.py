"""Sending: the outbox dispatcher, outcomes, rate limits, the sender registry."""
