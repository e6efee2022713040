"""The HTTP API (FastAPI): thin routes over ``rgrid.services``."""
