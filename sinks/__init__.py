"""darkscope sinks."""
