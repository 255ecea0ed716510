"""darkscope sinks: the ClickHouse store and the Kafka -> ClickHouse sink.

- ``sinks.schema``  tables, rollup views and analyst views, as versioned migration steps
- ``sinks.arrow``   EnrichedBatch -> columns (and an Arrow table) of the ``packets`` table
- ``sinks.native``  those columns -> one ClickHouse Native block per insert (what the sink sends)
- ``sinks.store``   ``Store``: open by DSN (chdb://PATH or http(s)://), migrate, insert, query
- ``sinks.sink``    ``Sink``: the consumer loop with exactly-once inserts and dead letters
- ``sinks.inserter`` ``Inserter``: the sink's inserts on a worker thread, finished in order
- ``sinks.run``     the ``darkscope sink`` process
- ``sinks.sql``     ``darkscope sql`` rendering
"""
