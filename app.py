"""The ASGI app: ``uvicorn app:app`` (or ``microcore dev`` for hot reload)."""

from microcore import create_app

app = create_app()
