"""absl flags generated from a dataclass, so every constant has exactly one flag and one comment.

Each dataclass field carries its help text in `metadata["help"]`; tuples become comma-separated
list flags (one value per channel, for example).
"""
from __future__ import annotations

import dataclasses
import typing

from absl import flags


def help_field(default, help: str):
    """A dataclass field with a help text (used for the generated flag)."""
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def define_flags(cls, flag_values=flags.FLAGS) -> None:
    """Defines one absl flag per field of dataclass `cls` (skipping already defined ones)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in flag_values:
            continue
        help_text = f.metadata.get("help", f.name)
        kind = hints[f.name]
        if kind is bool:
            flags.DEFINE_boolean(f.name, f.default, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(f.name, f.default, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(f.name, f.default, help_text, flag_values=flag_values)
        elif kind is str:
            flags.DEFINE_string(f.name, f.default, help_text, flag_values=flag_values)
        else:  # tuples of floats / ints
            flags.DEFINE_list(f.name, [str(v) for v in f.default], help_text,
                              flag_values=flag_values)


def from_flags(cls, flag_values=flags.FLAGS):
    """Builds `cls` from parsed flags; list flags are converted to the field's element type."""
    return from_record(cls, {f.name: flag_values[f.name].value for f in dataclasses.fields(cls)})


def from_record(cls, record: dict):
    """Builds `cls` from flag values by name (e.g. the `flags` a run records in eval.json, where
    list flags are lists of strings); list values are converted to the field's element type."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = record[f.name]
        kind = hints[f.name]
        if typing.get_origin(kind) is tuple:
            elem = typing.get_args(kind)[0]
            try:
                value = tuple(elem(v) for v in value)
            except ValueError:
                raise flags.ValidationError(
                    f"--{f.name}={','.join(map(str, value))}: expected comma-separated "
                    f"{elem.__name__} values") from None
        kwargs[f.name] = value
    return cls(**kwargs)
