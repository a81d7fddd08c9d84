"""HTTP routes. Each module exposes ``ROUTES`` (Starlette) or ``router`` (FastAPI)."""
