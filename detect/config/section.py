"""What every config section is: a pydantic model that refuses unknown keys, infinite numbers and
booleans in the place of numbers, with each key documented by the docstring under its field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _contains_bool(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_contains_bool(item) for item in value)
    return isinstance(value, bool)


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too. Numbers must
    be finite (`inf`, `.nan` and `1e400` are refused), and a boolean is not a number (`epochs: true`
    would otherwise be read as 1)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None and field.annotation is not bool and _contains_bool(value):
            raise ValueError("a boolean where a number or name is expected")
        return value


def all_positive(values, key: str):
    """A list (or tuple, or list of lists) of numbers, each > 0."""
    flat = [v for item in values for v in (item if isinstance(item, (list, tuple)) else [item])]
    if any(v <= 0 for v in flat):
        raise ValueError(f"every {key} must be > 0")
    return values
