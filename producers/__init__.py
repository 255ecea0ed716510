"""Sensors: packets from captures, interfaces or the simulator, as PacketBatches on Kafka.

Capture files and streams:
- ``producers.chunks``      bytes from a file, a pipe or stdin, gunzipped when compressed
- ``producers.pcap``        classic libpcap: file header and an incremental record indexer
- ``producers.pcapng``      pcapng: sections, interfaces, packet blocks
- ``producers.frames``      the frames container readers hand over, and the problems they report
- ``producers.capture``     a capture (pcap or pcapng, any source) as a stream of PacketBatches
- ``producers.live``        live capture through libpcap (pcapy-ng)
Decoding:
- ``producers.decode``      captured frames -> columnar PacketBatch (NumPy, no per-packet Python)
- ``producers.transport``   TCP, UDP, ICMP and ICMPv6 headers into batch columns
Sensor:
- ``producers.prefixes``    the address space a sensor monitors
- ``producers.sensor``      capture -> monitored prefixes -> Kafka, with the sensor's health
- ``producers.run``         what `darkscope sensor` and `darkscope simulate --kafka` run
- ``producers.pcapwriter``  PacketBatches back into pcap / pcapng files
- ``producers.sim``         the traffic simulator (its own map)
"""
