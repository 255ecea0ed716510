"""darkscope reports."""
