"""rgrid: run an unmodified Python script somewhere else, exactly as if it ran here."""

__version__ = "0.1.0"
