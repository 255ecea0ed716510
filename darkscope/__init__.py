"""darkscope: darknet (network telescope) threat monitoring on Kafka, Faust and ClickHouse."""

__version__ = "0.1.0"
__all__ = ["__version__"]
