"""The API routes, one module per resource (all behind the API key)."""

from bot.web.routes import customers, escalations, events, orders, reports

__all__ = ["customers", "escalations", "events", "orders", "reports"]
