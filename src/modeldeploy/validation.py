"""
Check a request's value against a model's :class:`~modeldeploy.Signature`.

A validator is compiled once per signature with :func:`compile_validator` and
then called per request, so the per-request work is the check itself: no
parsing of dtype names, no ``np.can_cast`` for a dtype seen before.

The rules, for one item (shapes leave out the batch axis):

* **Which value.** A signature with one input takes the value itself, or a
  mapping holding that one name (``{"x": value}``, the shape of a V2 request),
  which is unwrapped: the model receives the value. A signature with several
  inputs takes a mapping with exactly those names, and the model receives a new
  ``dict`` in signature order. A signature with no inputs, or no signature,
  accepts anything unchanged.
* **Optional inputs** (``TensorSpec(..., optional=True)``) may be left out of
  the mapping; the model then receives only the inputs that were sent.
* **Numeric dtypes** (``bool``, ``int*``, ``uint*``, ``float*``, ``complex*``):
  the value becomes a NumPy array of the declared dtype. An array of that dtype
  passes without a copy; anything else goes through ``np.asarray`` and is cast
  when ``np.can_cast(src, dst, "same_kind")`` allows it: ints and bools widen
  to floats, ``float64`` (JSON numbers) narrows to ``float32``; and between
  integer dtypes of either signedness (JSON integers are ``int64``, an image
  input is ``uint8``). No cast changes a value silently: an integer out of the
  target's range, an integer the target float cannot hold exactly (``2**24 + 1``
  as ``float32``), or a finite float that would overflow to infinity is
  refused. Floats never become ints, numbers never become bools, strings never
  become numbers. (The V2 protocol is stricter: a tensor's datatype must be the
  declared one, see :mod:`modeldeploy.v2`.)
* **``"str"`` / ``"bytes"``**: a Python ``str`` (``bytes``) for a scalar
  input, or an array or nested list of them, which becomes an object array
  (arrays of NumPy kind ``U`` / ``S`` pass as they are).
* **``"object"``**: any value passes unchanged; with a shape, the value must
  have that shape and becomes an object array.
* **Shapes**: ``-1`` matches any size of its axis; the number of axes must
  match. A shape of ``None`` accepts any shape.

Every refusal is a :class:`~modeldeploy.errors.ValidationError` whose message
names the input and says what was expected and what came.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ._extras import import_extra
from .errors import ValidationError
from .messages import Signature, TensorSpec

if TYPE_CHECKING:
    from types import ModuleType

    import numpy as np

__all__ = ["Validator", "compile_validator", "validate"]

Validator = Callable[[Any], Any]
"""A compiled check: takes a request's value, returns the value the model gets."""

_NUMERIC_KINDS = "biufc"
_MAX_PLANS = 64  # cast decisions cached per source dtype; bounded, clients pick dtypes
_SAME, _SAFE, _NARROW_INT, _NARROW, _REFUSE, _INT_TO_FLOAT = range(6)
_MAX_NAME_CHARS = 64
_KIND_NAMES = {"U": "str", "S": "bytes", "O": "object"}


def _identity(value: Any) -> Any:
    return value


def _numpy() -> ModuleType:
    # numpy is an optional dependency: imported when a signature needs it
    return import_extra("numpy", "a signature")


def _client_name(key: object) -> str:
    """Return a client-supplied name fit for an error message: repr, truncated."""
    text = repr(key)
    return text if len(text) <= _MAX_NAME_CHARS else text[: _MAX_NAME_CHARS - 3] + "..."


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _dtype_text(dtype: np.dtype[Any]) -> str:
    return _KIND_NAMES.get(dtype.kind) or str(dtype.name)


def compile_validator(signature: Signature | None) -> Validator:
    """
    Compile the check for *signature*, to be called once per request.

    Args:
        signature: The model's signature; ``None`` accepts every value.

    Returns:
        A function taking one item's value and returning it, converted as the
        module's rules say (a list of floats for a ``float32`` input becomes a
        ``float32`` array). It raises
        :class:`~modeldeploy.errors.ValidationError` for a value that does
        not fit, and is safe to call from many threads.

    Raises:
        ValueError: The signature repeats an input name or names an unknown
            dtype (a programming error, raised here rather than per request).

    .. versionadded:: 0.1.0
    """
    if signature is None or not signature.inputs:
        return _identity
    names = [spec.name for spec in signature.inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"signature repeats an input name: {names}")
    checks = {spec.name: _compile_spec(spec) for spec in signature.inputs}
    if len(signature.inputs) == 1:
        return _one_input(signature.inputs[0], checks[names[0]])
    optional = frozenset(spec.name for spec in signature.inputs if spec.optional)
    return _many_inputs(names, checks, optional)


@lru_cache(maxsize=64)
def _cached_validator(signature: Signature) -> Validator:
    return compile_validator(signature)


def validate(value: Any, signature: Signature | None) -> Any:
    """
    Check *value* against *signature* and return it, converted.

    A convenience for one-off checks; it caches the compiled validator per
    signature. A hot path keeps the result of :func:`compile_validator`.

    >>> import numpy as np
    >>> from modeldeploy import Signature, TensorSpec
    >>> sig = Signature([TensorSpec("x", "float32", (2,))])
    >>> validate([1.0, 2.5], sig)
    array([1. , 2.5], dtype=float32)

    Raises:
        ValidationError: The value does not fit; the message names the input.

    .. versionadded:: 0.1.0
    """
    if signature is None:
        return value
    return _cached_validator(signature)(value)


def _names_text(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _check_names(
    value: Mapping[Any, Any], names: list[str], optional: frozenset[str] = frozenset()
) -> None:
    """Raise the ValidationError that says how *value*'s keys differ from *names*."""
    problems = []
    missing = [n for n in names if n not in value and n not in optional]
    if missing:
        label = "input" if len(missing) == 1 else "inputs"
        problems.append(f"missing {label} {_names_text(missing)}")
    known = set(names)
    extra = next((k for k in value if k not in known), None)
    if extra is not None:
        problems.append(f"unexpected input {_client_name(extra)}")
    raise ValidationError(f"{'; '.join(problems)}; expected {_names_text(names)}")


def _one_input(spec: TensorSpec, check: Validator) -> Validator:
    name = spec.name
    names = [name]
    # for an "object" input a mapping may be the value itself; for any other
    # dtype a mapping can only be a request that names its inputs
    mapping_is_value = spec.dtype == "object"
    optional = spec.optional

    def validate_one(value: Any) -> Any:
        # a list (a JSON array) is never a mapping: skip the ABC check (0.15 us)
        if type(value) is not list and isinstance(value, Mapping):
            if len(value) == 1 and name in value:
                return check(value[name])
            if optional and not value:
                return {}  # the one input is optional and was not sent
            if not mapping_is_value:
                _check_names(value, names)
        return check(value)

    return validate_one


def _many_inputs(
    names: list[str], checks: dict[str, Validator], optional: frozenset[str]
) -> Validator:
    count = len(names)
    expected = _names_text(names)
    items = list(checks.items())
    known = frozenset(names)

    def validate_many(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError(
                f"expected a mapping of inputs {expected}, got {type(value).__name__}"
            )
        if len(value) != count or any(n not in value for n in names):
            if not optional:
                _check_names(value, names)
            # some optional inputs left out: the model gets what was sent
            if any(k not in known for k in value) or any(
                n not in value for n in names if n not in optional
            ):
                _check_names(value, names, optional)
            return {n: check(value[n]) for n, check in items if n in value}
        return {n: check(value[n]) for n, check in items}

    return validate_many


def _shape_check(spec: TensorSpec) -> Callable[[tuple[int, ...]], bool]:
    """Return a predicate: does an actual shape fit *spec*'s shape?"""
    expected = spec.shape
    if expected is None:
        return lambda actual: True
    if -1 not in expected:
        return lambda actual: actual == expected
    rank = len(expected)
    return lambda actual: (
        len(actual) == rank and all(e in (-1, a) for a, e in zip(actual, expected, strict=True))
    )


def _compile_spec(spec: TensorSpec) -> Validator:
    if spec.dtype == "object":
        return _identity if spec.shape is None else _compile_object(spec)
    if spec.dtype in ("str", "bytes"):
        return _compile_text(spec)
    npy = _numpy()
    try:
        dtype = npy.dtype(spec.dtype)
    except TypeError as exc:
        raise ValueError(f"input {spec.name!r}: unknown dtype {spec.dtype!r}") from exc
    if dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"input {spec.name!r}: dtype {spec.dtype!r} is not numeric; "
            'use "str", "bytes" or "object"'
        )
    return _compile_numeric(spec, dtype)


def _shape_error(spec: TensorSpec, actual: tuple[int, ...]) -> ValidationError:
    assert spec.shape is not None
    return ValidationError(
        f"input {spec.name!r}: expected shape {_shape_text(spec.shape)}, got {_shape_text(actual)}"
    )


def _ragged_error(spec: TensorSpec) -> ValidationError:
    return ValidationError(
        f"input {spec.name!r}: expected an array of {spec.dtype}, "
        "got a ragged or malformed nested sequence"
    )


def _compile_numeric(spec: TensorSpec, target: np.dtype[Any]) -> Validator:
    npy = _numpy()
    ndarray = npy.ndarray
    asarray = npy.asarray
    fits = _shape_check(spec)
    prefix = f"input {spec.name!r}: "
    plans: dict[np.dtype[Any], int] = {}
    int_range = (
        (int(npy.iinfo(target).min), int(npy.iinfo(target).max)) if target.kind in "iu" else None
    )

    # integers beyond this magnitude may not survive the cast to the float target
    exact_up_to = 2 ** (npy.finfo(target).nmant + 1) if target.kind == "f" else 0
    # a float narrowed to float16 or float32 overflows only past the target's largest
    # value: the square of that bounds a sum of squares (exact in float64)
    bounded = (
        float(npy.finfo(target).max) ** 2 if target.kind == "f" and target.itemsize < 8 else None
    )
    vdot = npy.vdot
    # JSON numbers arrive as float64: its plan for a float16/32 target, looked up once
    float64 = npy.dtype("float64")
    narrow_float64 = bounded is not None and npy.can_cast(float64, target, "same_kind")
    # a shape without free axes is compared at once, without the fits() call
    fixed = spec.shape if spec.shape is not None and -1 not in spec.shape else None
    # a float array from a list whose sum of squares is under this holds no value of
    # magnitude exact_up_to or more: any integer among them was cast exactly
    exact_squares = float(exact_up_to) ** 2
    # the stdlib array type code of a float32 or float64 target, for flat lists
    typecode = {"float32": "f", "float64": "d"}.get(target.name)
    frombuffer = npy.frombuffer

    def plan_for(src: np.dtype[Any]) -> int:
        if src.kind in "iu" and target.kind == "f" and src.itemsize * 8 > exact_up_to.bit_length():
            # int64 -> float64 is "safe" to NumPy, yet 2**53 + 1 becomes 2**53
            plan = _INT_TO_FLOAT
        elif npy.can_cast(src, target, "safe"):
            plan = _SAFE
        elif int_range is not None and src.kind in "iu":
            # across signedness too: JSON integers arrive as int64 for uint8 inputs
            plan = _NARROW_INT
        elif src.kind in _NUMERIC_KINDS and npy.can_cast(src, target, "same_kind"):
            plan = _NARROW
        else:
            plan = _REFUSE
        if len(plans) < _MAX_PLANS:
            plans[src] = plan
        return plan

    def check_numeric(value: Any) -> Any:
        squares = None  # the sum of squares of a float64 array made from a list
        if isinstance(value, ndarray):
            arr = value
        else:
            # inlined for speed, a flat list of floats (the JSON body of one instance;
            # 2.8 -> 2.3 us for 64 floats): the stdlib's array() takes numbers only
            # (a str or None raises) and stores each as astype would; then a sum of
            # squares under exact_up_to**2 rules out an overflow, NaN and an integer
            # the cast changed. Anything else takes the general path below.
            if typecode is not None and type(value) is list and value and type(value[0]) is float:
                try:
                    arr = frombuffer(array(typecode, value), target)
                except (TypeError, OverflowError):
                    pass
                else:
                    if vdot(arr, arr) < exact_squares and (
                        arr.shape == fixed or (fixed is None and fits(arr.shape))
                    ):
                        return arr
            try:
                arr = asarray(value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise _ragged_error(spec) from exc
            if arr.dtype is float64 and exact_up_to and arr.size:
                # floats and integers mixed: the integers became float64 too
                squares = vdot(arr, arr)
                if not squares < exact_squares:
                    _refuse_changed_ints(value, arr, target, exact_up_to, prefix)
        shape = arr.shape
        if shape != fixed and (fixed is not None or not fits(shape)):
            raise _shape_error(spec, shape)
        src = arr.dtype
        if src == target:
            return arr
        # inlined for speed (errstate costs 1.2 us a request, this 0.45): a sum of
        # squares within the target's largest square means no value overflows;
        # NaN, inf or a huge value fail it and take the exact check below
        if src is float64 and narrow_float64:
            if squares is None:
                squares = vdot(arr, arr)
            if squares <= bounded:
                return arr.astype(target)
        plan = plans.get(src)
        if plan is None:
            plan = plan_for(src)
        if plan == _SAFE:
            return arr.astype(target)
        if plan == _REFUSE:
            raise ValidationError(f"{prefix}expected dtype {target.name}, got {_dtype_text(src)}")
        if plan == _INT_TO_FLOAT:
            return _exact_floats(arr, target, exact_up_to, prefix)
        if plan == _NARROW_INT:
            assert int_range is not None
            if arr.size and (arr.min() < int_range[0] or arr.max() > int_range[1]):
                raise ValidationError(f"{prefix}values out of range for {target.name}")
            return arr.astype(target)
        # as above, for the other float sources (float32 to float16)
        if bounded is not None and src.kind == "f" and vdot(arr, arr) <= bounded:
            return arr.astype(target)
        try:
            with npy.errstate(over="raise"):
                return arr.astype(target)
        except FloatingPointError as exc:
            raise ValidationError(f"{prefix}values out of range for {target.name}") from exc

    return check_numeric


def _refuse_changed_ints(
    value: Any, arr: Any, target: np.dtype[Any], exact_up_to: int, prefix: str
) -> None:
    """Refuse an integer of a list of numbers that the float *target* cannot hold exactly.

    *arr* is the float64 array made from *value*: rare, only for lists holding a
    value of magnitude *exact_up_to* or more (or NaN, or an infinity).
    """
    npy = _numpy()
    with npy.errstate(invalid="ignore"):
        large = ~(npy.abs(arr) < exact_up_to)
    # the client's own numbers, at the same places: Python ints kept as they are
    for item in npy.asarray(value, dtype=object)[large].tolist():
        if type(item) is int:
            with npy.errstate(over="ignore"):  # past the float range: inf, refused below
                held = float(target.type(item))
            if held != item:  # int == float compares exactly in Python
                raise ValidationError(
                    f"{prefix}integer {item} cannot be held exactly by {target.name}"
                )


def _exact_floats(arr: Any, target: np.dtype[Any], exact_up_to: int, prefix: str) -> Any:
    """Cast an integer array to a float dtype, refusing any value the cast would change."""
    with _numpy().errstate(over="ignore"):  # an overflow to inf is refused below
        converted = arr.astype(target)
    if arr.size and (arr.max() > exact_up_to or arr.min() < -exact_up_to):
        # rare: compare the large values exactly, as Python ints
        large = (arr > exact_up_to) | (arr < -exact_up_to)
        for before, after in zip(arr[large].tolist(), converted[large].tolist(), strict=True):
            if before != after:  # int == float compares exactly in Python
                raise ValidationError(
                    f"{prefix}integer {before} cannot be held exactly by {target.name}"
                )
    return converted


def _compile_text(spec: TensorSpec) -> Validator:
    scalar_type: type[Any] = str if spec.dtype == "str" else bytes
    kind = "U" if spec.dtype == "str" else "S"
    fits = _shape_check(spec)
    # a text tensor is an object tensor whose items are all str (or bytes)
    check_shape = _compile_object(spec)
    prefix = f"input {spec.name!r}: "

    def check_text(value: Any) -> Any:
        if isinstance(value, scalar_type):
            if not fits(()):
                raise _shape_error(spec, ())
            return value
        arr = check_shape(value)
        if arr.dtype.kind == kind:
            return arr
        if arr.dtype.kind != "O":
            raise ValidationError(
                f"{prefix}expected dtype {spec.dtype}, got {_dtype_text(arr.dtype)}"
            )
        for item in arr.flat:
            if not isinstance(item, scalar_type):
                raise ValidationError(
                    f"{prefix}expected dtype {spec.dtype}, got {type(item).__name__}"
                )
        return arr

    return check_text


def _compile_object(spec: TensorSpec) -> Validator:
    npy = _numpy()
    ndarray = npy.ndarray
    fits = _shape_check(spec)

    def check_object(value: Any) -> Any:
        if isinstance(value, ndarray):
            arr = value
        else:
            try:
                arr = npy.asarray(value, dtype=object)
            except (ValueError, TypeError) as exc:
                raise _ragged_error(spec) from exc
        if not fits(arr.shape):
            raise _shape_error(spec, arr.shape)
        return arr

    return check_object
