"""darkscope streams."""
