"""What every config section shares: the `Strict` base model, the seed type, the
number checks YAML needs (no boolean for a number, 64-bit integers), and small field
rules used by several sections (powers of two, a step count or `auto`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_INT64_MAX = 2**63 - 1


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field annotation (through Optional/Union/Annotated/Literal) accepts `kind`."""
    import typing

    if annotation is kind:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(type(a) is kind for a in typing.get_args(annotation))
    if origin in (list, tuple, dict):
        return False
    return any(_accepts(a, kind) for a in typing.get_args(annotation))


def item_annotation(annotation: Any) -> Any:
    """The item type of a `list[...]` or homogeneous `tuple[...]` annotation, else None."""
    import typing

    if typing.get_origin(annotation) in (list, tuple):
        args = typing.get_args(annotation)
        return args[0] if args else None
    for arg in typing.get_args(annotation):
        found = item_annotation(arg)
        if found is not None:
            return found
    return None


def check_number_kinds(annotation: Any, value: Any) -> None:
    """Refuse a boolean where a number is expected, and integers beyond 64 bits.

    YAML reads `true` as a boolean and pydantic would take it for 1: `epochs: true` is a
    mistake, not one epoch.

    Raises:
        ValueError: naming the value (pydantic puts the key in front).
    """
    if isinstance(value, bool):
        if not _accepts(annotation, bool) and (
            _accepts(annotation, int) or _accepts(annotation, float)
        ):
            raise ValueError(f"expected a number, not a boolean. Received: {value!r}")
    elif isinstance(value, int) and abs(value) > _INT64_MAX:
        raise ValueError(f"must fit in 64 bits (|value| <= {_INT64_MAX}). Received: {value}")
    elif isinstance(value, (list, tuple)):
        item = item_annotation(annotation)
        if item is not None:
            for v in value:
                check_number_kinds(item, v)


# random seeds: NumPy's generators take [0, 2**32)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated.

    Numbers are finite (`.inf` and `.nan` are refused); `validate` also refuses a
    boolean for a number (`epochs: true`) and integers beyond 64 bits (`number_problems`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def check_power_of_two(value: int, name: str, low: int = 1, high: int | None = None) -> int:
    """`value`, or ValueError unless it is a power of two (from `low` to `high`), naming it:
    "must be a power of two from 8 to 1024. Received: resolution=48"."""
    if value < low or (high is not None and value > high) or value & (value - 1):
        bounds = f" from {low} to {high}" if high is not None else f" >= {low}" if low > 1 else ""
        raise ValueError(f"must be a power of two{bounds}. Received: {name}={value}")
    return value


def steps_or_auto(v: Any) -> Any:
    """A count of steps (an integer >= 1) or `auto` (steps per graph call)."""
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    raise ValueError(f"must be an integer >= 1 or 'auto'. Received: {v!r}")


def field_names(model: type[BaseModel]) -> dict[str, str]:
    """The keys a model accepts in YAML (aliases where set) -> its field names."""
    return {(f.alias or name): name for name, f in model.model_fields.items()}
