"""The ground floor: what every other package stands on, importing none of them.

- ``core.errors``     the exception hierarchy of the whole project (drawn in its docstring)
- ``core.settings``   one pydantic-settings class per deployable, ``DARKSCOPE_`` variables
- ``core.topics``     Kafka admin and read helpers: create topics, watermarks, read a range
- ``core.publisher``  the confluent-kafka producer that sensors and sinks publish with
- ``core.broker``     the local single-node Kafka broker (KRaft) from pinned Maven jars
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
