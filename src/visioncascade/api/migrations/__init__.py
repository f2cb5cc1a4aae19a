"""Alembic migrations of the prediction API (run with ``visioncascade db upgrade``)."""
