"""The engines: one package per engine (memory, sqlite, redis, amqp), each with its broker,
its result backend and its helpers; `contract` holds what they all provide; `registry` picks
one by URL scheme."""
