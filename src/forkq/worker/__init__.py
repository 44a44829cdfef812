"""The worker layer: what runs in the pool's children (consume.py: one consumer session and
the fetch loop; executor.py: one delivery to one outcome) and what the master does for them
(supervision.py: release what a dead child held, heartbeat). It joins the pool to the engines."""
