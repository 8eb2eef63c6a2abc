"""Proactive journeys: hooks on order events, contact policy, timers."""
