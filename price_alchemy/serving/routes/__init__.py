"""Routers: predictions and model information under ``/v1``; health and metrics at the root."""
