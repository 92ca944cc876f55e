"""Declaring options once: a dataclass field with its help text, choices and minimum.

Every option of :class:`gpvae.config.TrainConfig` (and of the option groups that models declare next
to their code, such as :class:`gpvae.gp.options.GPRFOptions`) is made with :func:`option`, so the CLI,
the papermill parameters and the Python keywords are generated from one declaration.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar


class ConfigError(ValueError):
    """An option value outside its allowed choices or range."""


def option(default, help: str, choices=None, minimum=None):
    """A dataclass field carrying its CLI help, allowed ``choices`` and ``minimum``."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum})


@dataclass
class OptionGroup:
    """The switches of one part of a run (the trainer, or one model), declared next to its code.
    :class:`gpvae.config.TrainConfig` inherits every group, so each field keeps one flat name as CLI option,
    papermill parameter and Python keyword; ``title`` heads the group in ``python -m gpvae train --help``."""

    title: ClassVar[str] = ""

    def check(self) -> None:
        """Raise :class:`ConfigError` for values that are valid one by one but not together (none here)."""

    @classmethod
    def values(cls, config) -> dict:
        """This group's fields with their values in ``config`` (any object carrying them, e.g. a TrainConfig)."""
        return {f.name: getattr(config, f.name) for f in fields(cls)}


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_type(name: str, annotation: str, value) -> None:
    """Raise :class:`ConfigError` unless ``value`` has the field's declared type (``"int | None"`` etc.;
    an int is a float, a bool is not a number)."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None and "None" in kinds:
        return
    allowed = tuple(t for k in kinds for t in _TYPES.get(k, (object,)))
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ConfigError(f"{name} = {value!r} ({type(value).__name__}) must be {' or '.join(kinds)}")


def validate(options) -> None:
    """Raise :class:`ConfigError` for any field of the dataclass ``options`` of the wrong type, outside its
    choices or range."""
    for f in fields(options):
        value, meta = getattr(options, f.name), f.metadata
        _check_type(f.name, f.type, value)
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{f.name} = {value!r} is not one of {', '.join(map(str, meta['choices']))}")
        if meta.get("minimum") is not None and value is not None and value < meta["minimum"]:
            raise ConfigError(f"{f.name} = {value!r} must be at least {meta['minimum']}")
