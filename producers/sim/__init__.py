"""The traffic simulator: realistic quarters of darknet traffic with their ground truth.

- ``producers.sim.model``     the quarter's plan: regions, ports, kinds of sources, daily volumes
- ``producers.sim.regions``   per-region IPv4 address pools drawn from the city database
- ``producers.sim.packets``   the packets each kind of source sends (Mirai, ZMap, backscatter...)
- ``producers.sim.ipv6``      IPv6 backscatter and an IPv6 scan, at a sensor with an IPv6 prefix
- ``producers.sim.truth``     what was sent, per day, port and region (the tests' ground truth)
- ``producers.sim.simulate``  a quarter, day by day, as packet batches or pcap files
"""
