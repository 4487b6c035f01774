"""The prediction service: FastAPI app, model store with hot swap, micro-batching, request events.

Start it with ``price-alchemy serve``; build the app in-process with
:func:`price_alchemy.serving.app.create_app`.
"""
