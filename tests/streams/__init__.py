"""Tests of the stream agents' building blocks (mirrors streams/)."""
