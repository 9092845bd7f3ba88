"""Alembic migrations for the vlmbot database; `bot.store` applies them at start-up."""
