"""Python environments that user scripts run in: never rgrid's own.

For now one clean virtual environment per worker interpreter (standard library only); the
dependencies issue adds environments built with uv from a dependency spec.
"""
