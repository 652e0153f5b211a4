"""Classes of your own named in a config by import path (`{class_path, args}`).

`instantiate(spec, where, base, kind)` imports only the module `spec.class_path` names,
checks that the attribute is a subclass of `base`, that `spec.args` fit its signature
(`inspect.signature`), and calls it. Every failure is a one-line `UserError` naming the
config key and the path: a missing module or class, an object of the wrong kind, arguments
that do not fit, or a constructor that refuses them.

This module imports neither TensorFlow nor Keras; the callers pass the Keras base class.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from tfkit.config import ClassPathConfig
from tfkit.errors import UserError, did_you_mean


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _public_name(cls: type) -> str:
    """`keras.callbacks.Callback` rather than `keras.src.callbacks.callback.Callback`."""
    parts = cls.__module__.split(".")
    if parts[:2] == ["keras", "src"] and len(parts) > 2:
        return f"keras.{parts[2]}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def load_class(spec: ClassPathConfig, where: str, base: type, kind: str) -> type:
    """The class `spec.class_path` names, after checking it is a subclass of `base`.

    Args:
        spec: the `{class_path, args}` entry.
        where: its dotted config key, for messages (`train.callbacks[0]`).
        base: the class it must derive from (`keras.callbacks.Callback`).
        kind: what it must be, for messages ("Keras callback").

    Raises:
        UserError: the module cannot be imported, has no such attribute, or the attribute
            is not a subclass of `base`.
    """
    module_name, _, name = spec.class_path.rpartition(".")
    key = f"`{where}.class_path` {spec.class_path}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UserError(
            f"{key}: cannot import module `{module_name}` ({_one_line(err)}). Put the folder "
            "that holds it on PYTHONPATH or run from it"
        ) from None
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing
        raise UserError(
            f"{key}: importing module `{module_name}` failed: {type(err).__name__}: "
            f"{_one_line(err)}"
        ) from None
    if not hasattr(module, name):
        public = [n for n in vars(module) if not n.startswith("_")]
        raise UserError(
            f"{key}: module `{module_name}` has no `{name}`.{did_you_mean(name, public)}"
        )
    obj = getattr(module, name)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        what = type(obj).__name__ if not isinstance(obj, type) else f"class {obj.__qualname__}"
        raise UserError(
            f"{key} is not a {kind}: expected a subclass of {_public_name(base)}, got a {what}"
        )
    return obj


def instantiate(spec: ClassPathConfig, where: str, base: type, kind: str, *positional: Any) -> Any:
    """`Class(*positional, **spec.args)` for the class `spec.class_path` names.

    Raises:
        UserError: see `load_class`; or `args` do not fit the class's signature, or its
            constructor refuses them (TypeError, ValueError); naming the signature.
    """
    cls = load_class(spec, where, base, kind)
    try:
        signature = f"{cls.__name__}{inspect.signature(cls)}"
    except (TypeError, ValueError):
        signature = None

    def misfit(err: BaseException) -> UserError:
        return UserError(
            f"`{where}.args` do not fit {spec.class_path}"
            + (f" (signature {signature})" if signature else "")
            + f": {_one_line(err)}. Received: args={spec.args}"
        )

    if signature is not None:
        try:
            inspect.signature(cls).bind(*positional, **spec.args)
        except TypeError as err:
            raise misfit(err) from None
    try:
        return cls(*positional, **spec.args)
    except (TypeError, ValueError) as err:  # e.g. **kwargs a Keras base class refuses
        raise misfit(err) from None
