"""The RabbitMQ engine (`amqp://`, `amqps://`, through pika): a broker only; results go to
another engine's backend."""

from forkq.engines.amqp.broker import AMQPBroker
from forkq.engines.contract import Engine

ENGINE = Engine("RabbitMQ", AMQPBroker, None, control=True)

__all__ = ["ENGINE", "AMQPBroker"]
