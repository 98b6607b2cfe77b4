"""The conversion app's services: every write to a conversion goes through these modules.

- ``transitions``: the state machine, one table; every state change and its result-backend
  mirror go through ``conversion_transition``.
- ``conversions``: what the API, the admin and the commands call: start, cancel, retry,
  dispatch.
- ``run``: the worker's path, top to bottom: claim, engine, publish, stop.
- ``heartbeat``: the thread that keeps a running conversion's claim alive.
- ``housekeeping``: the reaper of silent conversions and the sweep of orphaned files.
- ``engine``: settings turned into the raster engine's options.
- ``db``: retrying transient database errors.

Callers import the module they need (``from geoconvert.services import conversions``).
"""
