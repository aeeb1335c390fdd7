"""Tests for modeldeploy.validation: signature checks and safe coercion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeldeploy.errors import ValidationError
from modeldeploy.messages import Signature, TensorSpec
from modeldeploy.validation import compile_validator, validate
from tests import strategies

NUMERIC_DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
]  # fmt: skip


RAGGED = "input 'x': expected an array of float32, got a ragged or malformed nested sequence"


def one(spec: TensorSpec) -> Signature:
    return Signature([spec])


def fits(shape: tuple[int, ...], expected: tuple[int, ...] | None) -> bool:
    if expected is None:
        return True
    return len(shape) == len(expected) and all(
        e in (-1, a) for a, e in zip(shape, expected, strict=True)
    )


def keeps_values(arr: np.ndarray, target: np.dtype) -> bool:
    """Would casting *arr* to *target* keep every value (no wrap, no overflow to inf)?"""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = arr.astype(target)
    if target.kind in "iu" or (arr.dtype.kind in "iu" and target.kind == "f"):
        # Python compares int with int, and int with float, exactly
        return all(
            int(a) == (int(b) if target.kind in "iu" else float(b))
            for a, b in zip(arr.flat, cast.flat, strict=True)
        )
    return bool(np.all(np.isfinite(cast) | ~np.isfinite(arr)))


def inexact_int_to_float(source: np.dtype, target: np.dtype) -> bool:
    """Can some integer of *source* not be held exactly by the float *target*?"""
    if source.kind not in "iu" or target.kind != "f":
        return False
    return source.itemsize * 8 > np.finfo(target).nmant + 1


def conforms(arr: np.ndarray, spec: TensorSpec) -> bool:
    target = np.dtype(spec.dtype)
    return (
        fits(arr.shape, spec.shape)
        and (
            np.can_cast(arr.dtype, target, "same_kind")
            or (arr.dtype.kind in "iu" and target.kind in "iu")
        )
        and keeps_values(arr, target)
    )


class TestNumeric:
    @given(st.data())
    def test_accepts_exactly_the_conforming_arrays(self, data):
        spec = data.draw(strategies.tensor_specs())
        shape = data.draw(
            strategies.fitting_shapes(spec.shape)
            | hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
        )
        value = data.draw(hnp.arrays(data.draw(strategies.numeric_dtypes), shape))
        check = compile_validator(one(spec))
        if conforms(value, spec):
            result = check(value)
            assert result.dtype == np.dtype(spec.dtype)
            assert result.shape == value.shape
            with np.errstate(over="ignore", invalid="ignore"):
                expected = value.astype(spec.dtype)
            assert np.array_equal(result, expected, equal_nan=result.dtype.kind == "f")
            if value.dtype == result.dtype:
                assert result is value  # no copy when nothing to convert
        else:
            with pytest.raises(ValidationError) as info:
                check(value)
            assert f"input {spec.name!r}" in str(info.value)

    @given(strategies.tensor_specs(), st.data())
    def test_safe_casts_always_pass(self, spec, data):
        target = np.dtype(spec.dtype)
        safe = [
            d
            for d in NUMERIC_DTYPES
            if np.can_cast(d, target, "safe") and not inexact_int_to_float(np.dtype(d), target)
        ]
        dtype = data.draw(st.sampled_from(safe))
        value = data.draw(hnp.arrays(dtype, strategies.fitting_shapes(spec.shape)))
        result = validate(value, one(spec))
        assert result.dtype == target
        assert np.array_equal(result, value.astype(target), equal_nan=True)

    @given(st.lists(st.floats(width=32, allow_nan=False), max_size=8))
    def test_list_of_floats_becomes_float32(self, values):
        result = validate(values, one(TensorSpec("x", "float32", (-1,))))
        assert isinstance(result, np.ndarray)
        assert result.dtype == np.float32
        assert result.tolist() == values

    @given(
        st.sampled_from(["float32", "float64"]),
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False)
            | st.integers(-(2**64), 2**64)
            | st.sampled_from([2**24 + 1, -(2**53) - 1, 3.5e38, 1e300, 2**128]),
            min_size=1,
            max_size=6,
        ),
        st.sampled_from(["fixed", "free"]),
    )
    def test_a_list_of_numbers_changes_no_integer_silently(self, dtype, values, shape):
        """
        Floats and integers mixed, as JSON bodies carry them: every integer the
        target holds exactly, every float as a cast writes it, or a refusal.
        """
        target = np.dtype(dtype)
        spec = one(TensorSpec("x", dtype, (len(values),) if shape == "fixed" else (-1,)))
        with np.errstate(over="ignore"):
            changed = [v for v in values if type(v) is int and float(target.type(float(v))) != v]
            cast = np.array([float(v) for v in values], dtype=np.float64).astype(target)
        overflows = not np.isfinite(cast).all()
        # an integer outside int64 and uint64 makes NumPy build an object array: refused
        too_wide = any(type(v) is int and not -(2**63) <= v < 2**64 for v in values)
        try:
            result = validate(values, spec)
        except ValidationError as exc:
            message = str(exc)
            if "got object" in message:
                assert too_wide, message
            else:
                assert changed or overflows, message
                assert "cannot be held exactly" in message or "out of range" in message
            return
        assert not changed, (values, result)
        assert not overflows
        assert result.dtype == target
        assert result.tolist() == cast.tolist()

    def test_ints_and_bools_widen_to_floats(self):
        spec = one(TensorSpec("x", "float32", (3,)))
        assert validate([1, 2, 3], spec).tolist() == [1.0, 2.0, 3.0]
        assert validate([True, False, True], spec).tolist() == [1.0, 0.0, 1.0]

    def test_python_scalar_for_a_scalar_input(self):
        result = validate(2.5, one(TensorSpec("t", "float64", ())))
        assert result.shape == ()
        assert result.dtype == np.float64
        assert float(result) == 2.5

    @pytest.mark.parametrize(
        ("value", "dtype", "message"),
        [
            ([1.5, 2.0], "int32", "input 'x': expected dtype int32, got float64"),
            (["1", "2"], "float32", "input 'x': expected dtype float32, got str"),
            ([1, 0], "bool", "input 'x': expected dtype bool, got int64"),
            ([None, 1.0], "float32", "input 'x': expected dtype float32, got object"),
            ({"a": 1}, "float32", "missing input 'x'; unexpected input 'a'; expected 'x'"),
            ({}, "float32", "missing input 'x'; expected 'x'"),
            ([300, 1], "int8", "input 'x': values out of range for int8"),
            ([1e300, 1.0], "float32", "input 'x': values out of range for float32"),
            ([-1, 2], "uint8", "input 'x': values out of range for uint8"),
            ([1.0, 2.0], "uint8", "input 'x': expected dtype uint8, got float64"),
            ([1.0, 2.0, 3.0], "float32", "input 'x': expected shape (-1, 2), got (3,)"),
            (
                [[1.0], [1.0, 2.0]],
                "float32",
                RAGGED,
            ),
        ],
    )
    def test_refusals_say_what_was_expected(self, value, dtype, message):
        shape = (-1, 2) if "shape" in message else None
        with pytest.raises(ValidationError) as info:
            validate(value, one(TensorSpec("x", dtype, shape)))
        assert info.value.message == message
        assert info.value.code == "validation_error"
        assert info.value.http_status == 422

    def test_in_range_narrowing_passes(self):
        result = validate(np.array([-128, 127]), one(TensorSpec("x", "int8")))
        assert result.dtype == np.int8
        assert result.tolist() == [-128, 127]

    def test_infinity_stays_infinite(self):
        result = validate([float("inf"), float("nan")], one(TensorSpec("x", "float32")))
        assert np.isinf(result[0])
        assert np.isnan(result[1])

    @pytest.mark.parametrize("dtype", ["float16", "float32"])
    def test_narrowing_floats_refuses_exactly_what_overflows(self, dtype):
        # the fast sum-of-squares check must agree with the cast at the boundary
        top = float(np.finfo(dtype).max)
        spec = one(TensorSpec("x", dtype))
        assert validate([top, -top, 0.5], spec).tolist() == [top, -top, 0.5]
        for values in ([top * 1.01], [float("nan"), top * 2], [-top * 2, 1.0]):
            with pytest.raises(ValidationError, match="out of range"):
                validate(values, spec)

    def test_ragged_error_chains_numpys_error(self):
        with pytest.raises(ValidationError) as info:
            validate([[1.0], [1.0, 2.0]], one(TensorSpec("x", "float32")))
        assert isinstance(info.value.__cause__, ValueError)

    def test_dims_of_a_fixed_shape_must_match(self):
        check = compile_validator(one(TensorSpec("img", "uint8", (2, 2))))
        assert check([[0, 1], [2, 3]]).dtype == np.uint8
        with pytest.raises(ValidationError, match=r"expected shape \(2, 2\), got \(2, 3\)"):
            check([[0, 1, 2], [2, 3, 4]])


class TestText:
    @pytest.mark.parametrize(("dtype", "item"), [("str", "a"), ("bytes", b"a")])
    def test_scalar_passes_unchanged(self, dtype, item):
        assert validate(item, one(TensorSpec("s", dtype, ()))) is item

    @given(st.lists(st.text(), max_size=5))
    def test_list_of_str_becomes_object_array(self, items):
        result = validate(items, one(TensorSpec("s", "str", (-1,))))
        assert result.dtype == object
        assert result.tolist() == items

    def test_numpy_string_array_passes_as_is(self):
        arr = np.array([b"ab", b"c"])
        assert validate(arr, one(TensorSpec("s", "bytes", (2,)))) is arr

    @pytest.mark.parametrize(
        ("value", "dtype", "got"),
        [(["a", 1], "str", "int"), ([b"a", "b"], "bytes", "str"), (np.arange(2), "str", "int64")],
    )
    def test_wrong_element_type_is_refused(self, value, dtype, got):
        with pytest.raises(ValidationError) as info:
            validate(value, one(TensorSpec("s", dtype)))
        assert info.value.message == f"input 's': expected dtype {dtype}, got {got}"

    def test_scalar_for_an_array_input_is_refused(self):
        with pytest.raises(ValidationError, match=r"input 's': expected shape \(2,\), got \(\)"):
            validate("ab", one(TensorSpec("s", "str", (2,))))


class TestObject:
    @given(st.none() | st.integers() | st.text() | st.dictionaries(st.text(), st.integers()))
    def test_any_value_passes_unchanged(self, value):
        assert validate(value, one(TensorSpec("o"))) is value

    def test_shape_makes_an_object_array(self):
        result = validate([1, "a", None], one(TensorSpec("o", "object", (3,))))
        assert result.dtype == object
        assert result.tolist() == [1, "a", None]
        with pytest.raises(ValidationError, match="expected shape"):
            validate([1, 2], one(TensorSpec("o", "object", (3,))))


class TestInputs:
    @given(strategies.tensor_specs(), st.data())
    def test_one_input_takes_the_value_or_a_mapping_of_its_name(self, spec, data):
        value = data.draw(hnp.arrays(spec.dtype, strategies.fitting_shapes(spec.shape)))
        check = compile_validator(one(spec))
        assert check(value) is value
        assert check({spec.name: value}) is value

    def test_one_object_input_keeps_a_mapping_that_is_not_its_name(self):
        assert validate({"a": 1}, one(TensorSpec("x"))) == {"a": 1}
        assert validate({"x": {"a": 1}}, one(TensorSpec("x"))) == {"a": 1}

    @given(strategies.signatures(min_inputs=2), st.data())
    def test_several_inputs_need_exactly_their_names(self, signature, data):
        names = [spec.name for spec in signature.inputs]
        extra = data.draw(st.lists(strategies.input_names.filter(lambda n: n not in names)))
        keys = data.draw(st.sets(st.sampled_from(names + extra)))
        shapes = {spec.name: spec.shape for spec in signature.inputs}
        # bool casts safely to every numeric dtype, so only the names decide
        value = {
            key: data.draw(hnp.arrays("bool", strategies.fitting_shapes(shapes.get(key))))
            for key in keys
        }
        check = compile_validator(signature)
        if keys == set(names):
            result = check(value)
            assert list(result) == names  # signature order
            for spec in signature.inputs:
                assert result[spec.name].dtype == np.dtype(spec.dtype)
            return
        with pytest.raises(ValidationError) as info:
            check(value)
        message = info.value.message
        missing = [n for n in names if n not in keys]
        assert message.startswith("missing input" if missing else "unexpected input")
        assert all(repr(n) in message for n in missing)
        assert ("unexpected input" in message) == bool(keys - set(names))
        assert message.endswith("; expected " + ", ".join(repr(n) for n in names))

    @pytest.mark.parametrize("value", [[1.0, 2.0], np.zeros(2), "ab", None])
    def test_several_inputs_need_a_mapping(self, value):
        signature = Signature([TensorSpec("a", "float32"), TensorSpec("b", "float32")])
        with pytest.raises(ValidationError) as info:
            validate(value, signature)
        assert info.value.message.startswith("expected a mapping of inputs 'a', 'b', got ")

    def test_long_client_names_are_truncated(self):
        signature = Signature([TensorSpec("a", "float32"), TensorSpec("b", "float32")])
        with pytest.raises(ValidationError) as info:
            validate({"a": 1.0, "b": 2.0, "z" * 1000: 0}, signature)
        assert len(info.value.message) < 120
        assert info.value.message.startswith("unexpected input 'zzzz")
        assert "..." in info.value.message

    def test_error_in_one_input_names_that_input(self):
        signature = Signature([TensorSpec("a", "float32"), TensorSpec("b", "int32")])
        with pytest.raises(ValidationError) as info:
            validate({"a": [1.0], "b": [1.5]}, signature)
        assert info.value.message == "input 'b': expected dtype int32, got float64"


class TestCompile:
    @pytest.mark.parametrize("signature", [None, Signature([])])
    def test_no_inputs_accept_anything(self, signature):
        value = object()
        assert compile_validator(signature)(value) is value
        assert validate(value, signature) is value

    @pytest.mark.parametrize(
        ("specs", "match"),
        [
            ([TensorSpec("a", "float32"), TensorSpec("a", "int8")], "repeats an input name"),
            ([TensorSpec("a", "FP32")], "unknown dtype 'FP32'"),
            ([TensorSpec("a", "datetime64[s]")], "is not numeric"),
        ],
    )
    def test_bad_signature_fails_at_compile_time(self, specs, match):
        with pytest.raises(ValueError, match=match):
            compile_validator(Signature(specs))

    def test_importing_needs_no_numpy(self):
        code = (
            "import sys, modeldeploy.validation, modeldeploy.predictors;"
            "from modeldeploy import Signature, TensorSpec;"
            "from modeldeploy.validation import validate;"
            "assert validate({'a': 1}, Signature([TensorSpec('o')])) == {'a': 1};"
            "assert 'numpy' not in sys.modules, 'numpy imported'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
