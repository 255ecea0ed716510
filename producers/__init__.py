"""darkscope producers."""
