"""``make faults``: the pipeline as real processes (its own broker, a paced sensor, a worker, a
sink into chDB) with one fault injected at a time, then checked: nothing lost, nothing doubled."""
