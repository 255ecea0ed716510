"""The error tree: every error darkscope raises on purpose is a DarkscopeError, and each
carries the dead-letter reason a message rejected for it gets, whichever stage rejects it."""

from __future__ import annotations

import inspect

from core import errors
from core.errors import DarkscopeError, SchemaMismatch, UndecodableMessage, UnknownSchema


def test_every_error_class_is_in_the_tree_and_drawn_in_its_docstring() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for c in classes:
        assert issubclass(c, DarkscopeError)
        assert c.__name__ in (errors.__doc__ or ""), f"{c.__name__} missing from the drawn tree"


def test_a_rejected_message_is_dead_lettered_with_its_error_class_reason() -> None:
    assert UnknownSchema(0xABC).reason == "unknown_schema"
    assert UndecodableMessage("cut short").reason == "undecodable"
    assert SchemaMismatch("column of another length").reason == "bad_record"
