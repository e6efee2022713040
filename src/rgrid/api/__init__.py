"""The HTTP API (FastAPI): thin routes over ``rgrid.services``."""

from rgrid import schemas

# FastAPI reads the wire models' fields when the routes are defined; the CLI builds them lazily
schemas.build_all()
