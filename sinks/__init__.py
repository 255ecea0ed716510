"""darkscope sinks: the ClickHouse store and the Kafka -> ClickHouse sink.

- ``sinks.schema``   tables, rollup views and analyst views, as versioned migration steps
- ``sinks.arrow``    EnrichedBatch -> columns (and an Arrow table) of the ``packets`` table
- ``sinks.native``   those columns -> one ClickHouse Native block per insert (what the sink sends)
- ``sinks.store``    ``Store``: open by DSN (chdb://PATH or http(s)://), migrate, insert, query
- ``sinks.intents``  the intent protocol: commit metadata, dedup token, which intent a partition replays
- ``sinks.clients``  Protocols of what the loop calls on its consumer, dead-letter publisher and store
- ``sinks.loop``     ``SinkLoop``: the consumer loop with exactly-once inserts and dead letters, on the
  clients it is given (in-memory fakes in tests)
- ``sinks.inserter`` ``Inserter``: the loop's inserts on a worker thread, finished in order
- ``sinks.sink``     ``Sink``: the loop on a confluent-kafka consumer and a dead-letter Publisher
- ``sinks.run``      the ``darkscope sink`` process
- ``sinks.sql``      ``darkscope sql`` rendering
- ``sinks.registry`` the sensor registry (TOML) and its tables and per-group views
- ``sinks.sources``  ``sources_daily``: per-source activity by day, filled as packets are stored
- ``sinks.scans``    ``source_minutes`` and the ``scan_events(idle=...)`` view: scans cut at silences
"""
