"""JSON objects read back as typed records (dataclasses), tolerantly.

State files are written by this version, earlier ones, or a hand: a reader
keeps what fits the record's type hints and leaves the rest at its defaults
(typed_record), or refuses a damaged record whole (whole_record) where half of
one would vouch for something wrongly.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any, Dict, Type, TypeVar, Union, get_args, get_origin, get_type_hints

Record = TypeVar("Record")
_WRONG = object()  # a JSON value that is not of its field's type


def typed_record(cls: Type[Record], data: Any) -> Record:
    """A dataclass from a JSON object that any version may have written (or a hand):
    unknown keys are dropped, a missing or wrong-typed value leaves the field's default."""
    read = _fields(cls, data)
    return cls(**{name: value for name, value in read.items() if value is not _WRONG})


def whole_record(cls: Type[Record], data: Any) -> Record:
    """Like typed_record, but one wrong-typed value gives the empty record: for a record
    that vouches for something, where half of it would vouch wrongly."""
    read = _fields(cls, data)
    return cls() if any(value is _WRONG for value in read.values()) else cls(**read)


def _fields(cls: type, data: Any) -> Dict[str, Any]:
    """The record's fields that `data` holds, each typed or _WRONG."""
    data = data if isinstance(data, dict) else {}
    hints = get_type_hints(cls)
    return {name: _typed_value(data[name], hints[name]) for name in hints if name in data}


def _typed_value(value: Any, hint: Any) -> Any:
    """`value` if it is of the type `hint` (a JSON scalar, a dict, a list, a dataclass, or
    an Optional of one), made typed where it holds dataclasses; else _WRONG."""
    if get_origin(hint) is Union:  # Optional[X]
        if value is None:
            return None
        hint = get_args(hint)[0]
    if is_dataclass(hint):
        return typed_record(hint, value) if isinstance(value, dict) else _WRONG
    if get_origin(hint) is dict:
        return _typed_dict(value, get_args(hint)[1])
    if get_origin(hint) is list:
        return _typed_list(value, get_args(hint)[0])
    if isinstance(value, bool) and hint is not bool:
        return _WRONG  # JSON's true is no number
    return value if isinstance(value, (int, float) if hint is float else hint) else _WRONG


def _typed_dict(value: Any, item_hint: Any) -> Any:
    if not isinstance(value, dict):
        return _WRONG
    if item_hint is Any:
        return value
    items = {key: _typed_value(item, item_hint) for key, item in value.items()}
    return {key: item for key, item in items.items() if item is not _WRONG}


def _typed_list(value: Any, item_hint: Any) -> Any:
    if not isinstance(value, list):
        return _WRONG
    items = [_typed_value(item, item_hint) for item in value]
    return _WRONG if any(item is _WRONG for item in items) else items  # whole or not read
