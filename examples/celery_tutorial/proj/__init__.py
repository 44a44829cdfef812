"""The project of Celery's "Next steps" tutorial, ported to forkq (see ../README.md)."""
