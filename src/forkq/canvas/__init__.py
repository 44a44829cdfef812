"""Workflows (Celery's canvas): signatures, chains, groups and chords.

    signature.py  the user's API: Signature and chain; groups.py: group and chord
    build.py      signatures ─► wire nodes (forkq.flow), every task id fixed
    dispatch.py   a node and what follows it ─► Messages
    results.py    GroupResult, gathering many results at once
    effects.py    the worker's side: a finished message's flow ─► Effects
    builtins.py   the tasks every app registers (forkq.collect, forkq.starmap)

What a message carries of a workflow (`Message.flow`: nodes, chord references, and the checks
a worker makes of them) is `forkq.flow`, outside this package: the envelope reads it, and
this package builds messages, so the two would import each other. This package's `__init__`
imports nothing: the import-linter contracts in pyproject.toml place each module on its own.
"""
