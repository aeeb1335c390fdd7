"""The V2 codec's bulk path for common requests gives what its general path gives."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeldeploy import v2
from modeldeploy.errors import ModelDeployError, NotAcceptableError
from modeldeploy.messages import Signature, TensorSpec

from . import strategies

INFINITIES = (b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff")  # float32 +inf, -inf


def body_of(parts: tuple[dict[str, Any], bytes, bool]) -> tuple[bytes, int | None, bytes]:
    """The request body, its header length (None for JSON alone) and its JSON part."""
    header, tail, binary = parts
    text = json.dumps(header).encode()
    return text + tail, (len(text) if binary else None), text


def outcome(decode: Any) -> Any:
    """What *decode()* gives: the request, or the error's type and message."""
    try:
        return decode()
    except ModelDeployError as exc:
        return type(exc), exc.message


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Dtype, shape, bits (elements for BYTES) and writability alike."""
    if a.flags.writeable != b.flags.writeable:
        return False
    if a.dtype.kind == "O":
        return a.dtype == b.dtype and a.shape == b.shape and a.tolist() == b.tolist()
    return strategies.bit_equal(a, b)


def same_request(a: Any, b: Any) -> bool:
    if not isinstance(a, v2.InferRequest) or not isinstance(b, v2.InferRequest):
        return bool(a == b)
    return (
        list(a.inputs) == list(b.inputs)
        and all(same_array(a.inputs[k], b.inputs[k]) for k in a.inputs)
        and (a.id, a.parameters, a.outputs) == (b.id, b.parameters, b.outputs)
    )


def general(body: bytes, length: int | None, text: bytes) -> Any:
    """The general path alone, on the same parsed header."""
    view = memoryview(body)
    header = v2._loads(memoryview(text))  # the parser the codec uses
    return v2._decode_header(header, view, len(text), length is not None)


class TestDecodeCommon:
    @given(parts=strategies.v2_request_parts())
    def test_any_request_decodes_as_on_the_general_path(
        self, parts: tuple[dict[str, Any], bytes, bool]
    ) -> None:
        body, length, text = body_of(parts)
        want = outcome(lambda: general(body, length, text))
        got = outcome(lambda: v2.decode_infer_request(body, length))
        assert same_request(got, want), (got, want)

    @given(parts=strategies.v2_request_parts(well_formed=True))
    def test_a_well_formed_request_takes_the_common_path(
        self, parts: tuple[dict[str, Any], bytes, bool]
    ) -> None:
        body, length, text = body_of(parts)
        header = v2._loads(memoryview(text))
        common = v2._decode_common(header, memoryview(body), len(text), length is not None)
        want = general(body, length, text)
        if common is None:  # only an infinity's bytes across two FP32 elements send it on
            assert any(
                array.dtype == np.float32 and any(inf in array.tobytes() for inf in INFINITIES)
                for array in want.inputs.values()
            )
        else:
            assert same_request(common, want)

    def test_requested_outputs_kept_for_reuse_are_bounded(self) -> None:
        def outputs(name: str, binary: Any) -> Any:
            parameters = {} if binary == "absent" else {"parameters": {"binary_data": binary}}
            return v2._common_outputs([{"name": name, **parameters}])

        for i in range(2 * v2._OUTPUTS_SEEN_MAX):  # a client naming ever new outputs
            assert outputs(f"y{i}", True) == (
                v2.RequestedOutput(f"y{i}", True, {"binary_data": True}),
            )
        assert len(v2._OUTPUTS_SEEN) <= v2._OUTPUTS_SEEN_MAX
        v2._OUTPUTS_SEEN.clear()
        long = "n" * (v2._OUTPUT_NAME_KEPT + 1)
        assert outputs(long, False)[0].name == long
        assert not v2._OUTPUTS_SEEN
        # what a client sent is told apart: absent, null and each boolean
        seen = {b: outputs("y", b)[0] for b in ("absent", None, True, False)}
        assert {b: (o.binary_data, dict(o.parameters)) for b, o in seen.items()} == {
            "absent": (None, {}),
            None: (None, {"binary_data": None}),
            True: (True, {"binary_data": True}),
            False: (False, {"binary_data": False}),
        }
        assert outputs("y", True)[0] is seen[True]  # reused
        with pytest.raises(TypeError):
            seen[True].parameters["binary_data"] = False  # type: ignore[index]

    def test_an_infinity_s_bytes_across_two_elements_take_the_general_path(self) -> None:
        # 0.0 then a float whose low bytes are 80 7f: the bytes of +inf straddle the two
        straddler = float(np.frombuffer(b"\x80\x7f\x00\x3f", "<f4")[0])
        body = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [0.0, straddler]}]}
        ).encode()
        request = v2.decode_infer_request(body)
        assert request.inputs["x"].tolist() == [0.0, straddler]
        assert v2._decode_common(json.loads(body), memoryview(body), len(body), False) is None

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([1.0, True], "FP32 data must be numbers"),
            ([1.0, 1e39], "a value is out of range for FP32"),
            ([1.0, 2.0, 3.0], "shape [2] needs 2 elements, 'data' has 3"),
            ([[1.0], 2.0], "'data' mixes nested lists and values"),
        ],
    )
    def test_what_the_common_path_passes_on_is_refused_with_its_reason(
        self, data: list[Any], message: str
    ) -> None:
        body = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": data}]}
        ).encode()
        with pytest.raises(ModelDeployError, match=message.replace("[", r"\[")):
            v2.decode_infer_request(body)


class TestPlan:
    @pytest.mark.parametrize("datatype", sorted(v2.DATATYPES))
    @pytest.mark.parametrize(
        "dtype", ["object", "str", "bytes", "bool", "int8", "uint64", "float16", "float32", "<f8"]
    )
    def test_the_dtype_shortcut_agrees_with_the_datatype_check(
        self, datatype: str, dtype: str
    ) -> None:
        spec = TensorSpec("x", dtype, None)
        array = np.zeros(2, dtype=v2.DATATYPES[datatype])
        request = v2.InferRequest(inputs={"x": array})
        want = outcome(lambda: v2._check_datatype(spec, array))
        got = outcome(lambda: v2.inputs_for_predictor(request, Signature([spec])))
        if want is None:
            assert got is array
        else:
            assert got == want

    def test_one_plan_per_signature(self) -> None:
        a = Signature([TensorSpec("x", "float32", (2,))])
        b = Signature([TensorSpec("x", "float32", (2,))])
        assert v2._plan(a) is v2._plan(a)
        assert v2._plan(a) is not v2._plan(b)
        assert v2._plan(None).declared is None


class TestEncodeJson:
    @given(
        array=hnp.arrays(
            st.sampled_from(["float16", "float32", "float64", ">f4"]),
            hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5),
        )
    )
    def test_json_outputs_refuse_exactly_the_non_finite(self, array: np.ndarray) -> None:
        if np.isfinite(array).all():
            body, _ = v2.encode_infer_response({"y": array}, model_name="m")
            (entry,) = json.loads(body)["outputs"]
            assert np.array_equal(np.array(entry["data"], dtype=array.dtype), array.ravel())
        else:
            with pytest.raises(NotAcceptableError):
                v2.encode_infer_response({"y": array}, model_name="m")

    @pytest.mark.parametrize("first", ["nan", "bad_bytes"])
    def test_the_first_output_that_json_cannot_carry_is_the_one_named(self, first: str) -> None:
        bad_bytes = np.array([b"\xff"], dtype=object)
        nan = np.array([1.0, np.nan], dtype=np.float32)
        outputs = {"nan": nan, "bad_bytes": bad_bytes}
        if first == "bad_bytes":
            outputs = {"bad_bytes": bad_bytes, "nan": nan}
        with pytest.raises(NotAcceptableError, match=f"output '{first}'"):
            v2.encode_infer_response(outputs, model_name="m")

    def test_null_elsewhere_in_the_body_is_no_nan(self) -> None:
        outputs = {"y": np.ones(2, np.float32), "s": np.array([b"null"], dtype=object)}
        body, _ = v2.encode_infer_response(outputs, model_name="null", id="null")
        assert [o["data"] for o in json.loads(body)["outputs"]] == [[1.0, 1.0], ["null"]]

    def test_a_masked_nan_is_refused_as_json(self) -> None:
        masked = np.ma.array([1.0, np.nan], mask=[False, True])
        with pytest.raises(NotAcceptableError, match="output 'y' holds NaN"):
            v2.encode_infer_response({"y": masked}, model_name="m")


class TestOneOutput:
    """The common answer, one numeric output, built from cached bytes."""

    @given(
        array=hnp.arrays(
            st.sampled_from(["float16", "float32", "float64", "int8", "uint16", "int64", "bool"]),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        ),
        model=st.sampled_from(["m", 'q"uote', "\u00e9t\u00e9"]),
        version=st.sampled_from([None, "1", "v\\2"]),
        name=st.sampled_from(["y", "out put", "\u2603"]),
        binary=st.booleans(),
    )
    def test_it_writes_the_general_paths_bytes(
        self, array: np.ndarray, model: str, version: str | None, name: str, binary: bool
    ) -> None:
        general: dict[str, Any] = {"model_name": model}
        if version is not None:
            general["model_version"] = version
        datatype = v2.dtype_to_datatype(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        fast = v2._one_output({name: array}, model, version, binary)
        if binary:
            raw = bytes(v2._to_binary(array, datatype, name))
            entry["parameters"] = {"binary_data_size": len(raw)}
            head = v2.dumps_json({**general, "outputs": [entry]})
            assert fast == (head + raw, str(len(head)))
        else:
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                assert fast is None  # the general path refuses it, naming the output
                return
            entry["data"] = v2._to_json_data(array, datatype, name)
            assert fast == (v2.dumps_json({**general, "outputs": [entry]}), None)
        # and the codec's encoder gives the same bytes, however the request asked for them
        asks: list[tuple[tuple[v2.RequestedOutput, ...], bool]] = [
            ((), binary),
            ((v2.RequestedOutput(name, binary, {"binary_data": binary}),), not binary),
            ((v2.RequestedOutput(name, None, {}),), binary),
        ]
        for requested, default in asks:
            body, headers = v2.encode_infer_response(
                {name: array},
                model_name=model,
                model_version=version,
                requested=requested,
                binary_data_output=default,
            )
            assert fast is not None
            assert body == fast[0]
            assert headers.get(v2.HEADER_LENGTH) == fast[1]

    def test_anything_else_takes_the_general_path(self) -> None:
        assert v2._one_output({"y": np.array([b"a"], dtype=object)}, "m", None, False) is None
        assert v2._one_output({"y": np.ones(2, ">f4")}, "m", None, True) is None
        assert v2._one_output({"y": np.array([1.0, np.inf], np.float32)}, "m", None, False) is None
        # an output asked for by another name is the general path's error to give
        with pytest.raises(ModelDeployError, match="unknown output 'z'"):
            v2.encode_infer_response(
                {"y": np.ones(2)}, model_name="m", requested=(v2.RequestedOutput("z"),)
            )
