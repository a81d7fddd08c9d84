"""The only package that imports Starlette/FastAPI: the HTTP surface of jitprov."""
