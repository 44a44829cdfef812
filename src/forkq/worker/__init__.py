"""The worker layer: what runs in the pool's children (fetch, execute, store, ack) and what
the master does for them (release, heartbeat). It joins the pool to brokers and backends."""
