"""The commands of ``darkscope``, one module per part of the pipeline; ``darkscope.cli`` groups them.

- ``broker``   ``broker up|status|down|fetch`` and ``topics create|list``: the Kafka side
- ``sensors``  ``sensor`` and ``simulate``: packets in
- ``pipeline`` ``worker``, ``alerts tail``, ``sink`` and ``sql``: streams and the store
- ``report``   ``report`` and ``demo``: what comes out
- ``csirt``    ``sensors load|list`` (the sensor registry) and ``notify`` (per-AS notification lists)
"""
