"""Stream agents (faust-streaming): enrichment, windowed counts and alerts.

The worker:
- ``streams.worker``       `darkscope worker`: create the topics, run the Faust app
- ``streams.faustapp``     the Faust app's settings and its Kafka consumer tuning
- ``streams.app``          the agents (enrich, count, merge) and timers, moving bytes only
- ``streams.state``        what a worker holds between events
Enrichment (pure functions of a batch):
- ``streams.enrich``       region, AS, service, fingerprints of every packet; the partials
- ``streams.geo``          GeoIP lookups for whole batches, with a cache
- ``streams.geodb``        reading MaxMind-format files, whatever their layout
- ``streams.mmdb_tree``    IPv4 lookups in an .mmdb search tree for arrays of addresses
- ``streams.asn_build``    building the ASN database from npm data
- ``streams.services``     IANA service names of destination ports
- ``streams.fingerprints`` one predicate per scanner (Mirai, ZMap, Masscan, Nmap, backscatter)
Counting (no Faust):
- ``streams.combiner``     a batch's partial counts, split over counts partitions by address
- ``streams.progress``     per packets partition: watermark, idleness; counting's backlog
- ``streams.watermark``    the event-time watermark over the packets partitions
- ``streams.windows``      a kind's minute windows on one counts partition (``streams.hours``:
  its hour windows; ``streams.sketch``: HyperLogLog and the address hash)
- ``streams.shard``        a counts partition's windows of every kind (first stage)
- ``streams.merge``        a kind's windows summed over the counts partitions (second stage)
- ``streams.windowstore``  how closed windows are written to the ``window_counts`` table
- ``streams.takeover``     replay points: counting that survives a partition moving
- ``streams.local``        both counting stages in one process, for tests and benches
Alerts:
- ``streams.alerts``       surges, new top-10 ports, Mirai bursts, backscatter episodes
- ``streams.alert_reader`` `darkscope alerts tail`
"""
