"""DriftMonitor and reference_statistics: detection power, false alarms, gauges, item forms."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import modeldeploy as md
from modeldeploy.events import ModelLoaded, Predictions
from modeldeploy.monitors import CompositeMonitor, DriftMonitor, reference_statistics
from tests import strategies

FEATURES = 4
SHIFTED = 2  # the feature whose mean moves
SHIFT = 0.25  # in standard deviations
# what the tests promise: found within N values of the shifted stream (sample_rate=1),
# and no false alarm over a long unshifted one
DETECTED_WITHIN = 1000
NULL_VALUES = 40_000


def rows(rng: random.Random, n: int, shift: float = 0.0) -> list[list[float]]:
    return [
        [rng.gauss(shift if j == SHIFTED else 0.0, 1.0) for j in range(FEATURES)] for _ in range(n)
    ]


def outputs(batch: list[list[float]]) -> list[float]:
    return [sum(r) for r in batch]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    training = rows(random.Random(0), 10_000)
    ref = reference_statistics(
        training, outputs(training), input_names=["a", "b", "c", "d"], output_names=["sum"]
    )
    return json.loads(json.dumps(ref))  # as the model store keeps it


def monitor(reference: dict[str, Any], **options: Any) -> DriftMonitor:
    return DriftMonitor(reference, registry=CollectorRegistry(), **options)


def feed(m: DriftMonitor, batch: list[list[float]], model: str = "m", version: str = "1") -> None:
    m.on_predictions(Predictions(model, version, batch, outputs(batch)))


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("modeldeploy_drift")
    }


class TestReferenceStatistics:
    def test_plain_json_of_numbers_and_names(self, reference: dict[str, Any]) -> None:
        assert reference["format"] == "modeldeploy.drift/1"
        assert [f["name"] for f in reference["inputs"]] == ["a", "b", "c", "d"]
        assert [f["name"] for f in reference["outputs"]] == ["sum"]
        first = reference["inputs"][0]
        assert len(first["edges"]) == 9
        assert first["count"] == 10_000
        assert abs(first["mean"]) < 0.05
        assert abs(first["std"] - 1) < 0.05
        assert all(abs(p - 0.1) < 0.01 for p in first["proportions"])

    def test_default_names(self) -> None:
        ref = reference_statistics([[1.0, 2.0], [3.0, 4.0]], [0.5, 0.7])
        assert [f["name"] for f in ref["inputs"]] == ["x0", "x1"]
        assert [f["name"] for f in ref["outputs"]] == ["y"]
        probs = reference_statistics([1.0, 2.0], [[0.2, 0.8], [0.6, 0.4]])
        assert [f["name"] for f in probs["inputs"]] == ["x0"]
        assert [f["name"] for f in probs["outputs"]] == ["y0", "y1"]

    def test_numpy_and_mappings(self) -> None:
        data = np.arange(20.0).reshape(10, 2)
        from_array = reference_statistics(data)
        from_mapping = reference_statistics({"x0": data[:, 0], "x1": data[:, 1]})
        assert from_array == from_mapping

    def test_a_dataframe_names_its_columns(self) -> None:
        pd = pytest.importorskip("pandas")
        frame = pd.DataFrame({"sepal": [5.1, 6.2, 5.9], "petal": [1.4, 4.5, 5.1]})
        ref = reference_statistics(frame)
        assert [f["name"] for f in ref["inputs"]] == ["sepal", "petal"]
        assert ref == reference_statistics({"sepal": [5.1, 6.2, 5.9], "petal": [1.4, 4.5, 5.1]})

    @pytest.mark.parametrize(
        ("inputs", "options", "message"),
        [
            ([1.0], {"bins": 1}, "bins"),
            ([float("nan")], {}, "no finite value"),
            ([[1.0, 2.0], [1.0]], {}, "different lengths"),
            ([[1.0, 2.0]], {"input_names": ["a"]}, "1 names for 2 columns"),
            ({"a": [1.0]}, {"input_names": ["b"]}, "do not match"),
            ([], {}, "non-empty"),
        ],
    )
    def test_refuses(self, inputs: Any, options: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            reference_statistics(inputs, **options)

    @given(strategies.feature_columns, st.integers(2, 20))
    def test_bins_partition_the_data(self, column: list[float], bins: int) -> None:
        (feature,) = reference_statistics(column, bins=bins)["inputs"]
        assert feature["edges"] == sorted(set(feature["edges"]))
        assert len(feature["proportions"]) == len(feature["edges"]) + 1 <= bins
        assert sum(feature["proportions"]) == pytest.approx(1.0)
        assert feature["count"] == len(column)
        assert json.loads(json.dumps(feature)) == feature


class TestDetection:
    def test_a_quarter_sd_shift_is_flagged_within_n_values(
        self, reference: dict[str, Any]
    ) -> None:
        rng = random.Random(1)
        m = monitor(reference, sample_rate=1.0)
        feed(m, rows(rng, 1000))  # a full window of healthy traffic first
        assert not any(d.detected for d in m.drift("m"))
        seen = 0
        while not any(d.detected and d.feature == "c" for d in m.drift("m")):
            assert seen < DETECTED_WITHIN, "not flagged"
            feed(m, rows(rng, 10, shift=SHIFT))
            seen += 10
        flagged = {d.feature for d in m.drift("m") if d.detected}
        assert flagged <= {"c", "sum"}  # the unshifted inputs stay quiet

    def test_with_the_default_sampling_within_ten_times_as_many_requests(
        self, reference: dict[str, Any]
    ) -> None:
        rng = random.Random(2)
        m = monitor(reference)  # sample_rate=0.1: one request in ten is counted
        requests = 0
        while not any(d.detected and d.feature == "c" for d in m.drift("m")):
            assert requests < 10 * DETECTED_WITHIN, "not flagged"
            for row in rows(rng, 50, shift=SHIFT):  # inline calls: one item per event
                feed(m, [row])
            requests += 50

    def test_unshifted_data_is_not_flagged_over_a_long_run(
        self, reference: dict[str, Any]
    ) -> None:
        rng = random.Random(3)
        m = monitor(reference, sample_rate=1.0)
        evaluations = flagged = 0
        for _ in range(NULL_VALUES // 250):
            feed(m, rows(rng, 250))  # one chunk: the window slides once
            drift = m.drift("m")
            evaluations += len(drift)
            flagged += sum(d.detected for d in drift)
        assert evaluations == (NULL_VALUES // 250) * 5
        # alpha=0.001 per feature and window; the binned statistic is conservative
        assert flagged == 0
        assert max(d.psi for d in m.drift("m")) < 0.05

    def test_psi_and_ks_grow_with_the_shift(self, reference: dict[str, Any]) -> None:
        found = {}
        for shift in (0.0, 0.5, 1.0):
            m = monitor(reference, sample_rate=1.0)
            feed(m, rows(random.Random(4), 1000, shift=shift))
            found[shift] = next(d for d in m.drift("m") if d.feature == "c")
        assert found[0.0].psi < found[0.5].psi < found[1.0].psi
        assert found[0.0].ks < found[0.5].ks < found[1.0].ks
        assert found[1.0].psi > 0.25  # a large shift by the usual reading


class TestGauges:
    def test_exported_per_feature_with_bounded_labels(self, reference: dict[str, Any]) -> None:
        m = monitor(reference, sample_rate=1.0, window=100, chunks=1)
        feed(m, rows(random.Random(5), 100, shift=3.0))
        got = samples(m.registry)
        labels = {dict(k[1]).get("feature") for k in got}
        assert labels == {"a", "b", "c", "d", "sum", None}  # None: the window gauge
        key = (("feature", "c"), ("kind", "input"), ("model", "m"), ("version", "1"))
        assert got["modeldeploy_drift_detected", key] == 1.0
        assert got["modeldeploy_drift_psi", key] > 1.0
        assert got["modeldeploy_drift_ks", key] > 0.5
        assert (
            got["modeldeploy_drift_window_observations", (("model", "m"), ("version", "1"))] == 100
        )

    def test_nothing_before_the_first_chunk(self, reference: dict[str, Any]) -> None:
        m = monitor(reference, sample_rate=1.0)
        feed(m, rows(random.Random(6), 249))
        assert samples(m.registry) == {}
        assert m.drift("m") == []

    def test_a_new_version_starts_a_new_window(self, reference: dict[str, Any]) -> None:
        m = monitor(reference, sample_rate=1.0, window=100, chunks=1)
        feed(m, rows(random.Random(7), 100), version="1")
        m.on_model_loaded(ModelLoaded("m", "2", 0.1))
        assert m.drift("m") == []
        assert samples(m.registry) == {}  # the old version's series are gone
        feed(m, rows(random.Random(7), 100), version="2")
        assert {dict(k[1])["version"] for k in samples(m.registry)} == {"2"}

    def test_monitors_on_one_registry_share_the_gauges(self, reference: dict[str, Any]) -> None:
        registry = CollectorRegistry()
        first = DriftMonitor(reference, registry=registry, model="a", window=10, chunks=1,
                             sample_rate=1.0)  # fmt: skip
        second = DriftMonitor(reference, registry=registry, model="b", window=10, chunks=1,
                              sample_rate=1.0)  # fmt: skip
        for m in (first, second):
            feed(m, rows(random.Random(8), 10), model="a")
            feed(m, rows(random.Random(8), 10), model="b")
        assert {dict(k[1])["model"] for k in samples(registry)} == {"a", "b"}
        assert first.drift("b") == second.drift("a") == []


class TestItems:
    def test_sampling_counts_one_item_in_stride(self, reference: dict[str, Any]) -> None:
        m = monitor(reference, sample_rate=0.1, window=100, chunks=1)
        rng = random.Random(9)
        for _ in range(50):
            feed(m, rows(rng, 20))  # 1000 items: 100 counted
        assert m.drift("m")[0].observations == 100

    def test_v2_mappings_numpy_rows_and_scalars(self) -> None:
        ref = reference_statistics({"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0, 3.0]})
        m = DriftMonitor(ref, registry=CollectorRegistry(), sample_rate=1.0, window=8,
                         chunks=1)  # fmt: skip
        items: list[Any] = [
            {"x": np.array([0.5, 1.5]), "y": np.array([2.5, 0.5])},  # a V2 request, 2 rows
            np.array([[0.5, 1.5], [2.5, 3.5]]),  # rows as one 2-D array
            [[1.0, 2.0]],  # one row in a list
            (1.0, 2.0),  # one row
            np.float64(1.0),  # wrong shape for two features: skipped
            "text",  # skipped
            [1.0, float("nan")],  # the NaN is skipped, the 1.0 counted
        ]
        m.on_predictions(Predictions("m", "1", items, [None] * len(items)))
        assert m.drift("m") == []  # 7 values of x so far: the chunk of 8 is not complete
        m.on_predictions(Predictions("m", "1", items, [None] * len(items)))
        observed = {d.feature: d.observations for d in m.drift("m")}
        assert observed == {"x": 14, "y": 12}

    def test_a_one_feature_reference_takes_plain_values(self) -> None:
        ref = reference_statistics([0.0, 1.0, 2.0, 3.0])
        m = DriftMonitor(ref, registry=CollectorRegistry(), sample_rate=1.0, window=4,
                         chunks=1)  # fmt: skip
        m.on_predictions(Predictions("m", "1", [1.0, np.float32(2.0), [3.0], 2], [0, 0, 0, 0]))
        (d,) = m.drift("m")
        assert d.observations == 4

    def test_only_its_model(self, reference: dict[str, Any]) -> None:
        m = monitor(reference, model="iris", sample_rate=1.0, window=10, chunks=1)
        feed(m, rows(random.Random(10), 10), model="other")
        assert m.drift("other") == []


class TestContract:
    def test_exported_from_the_package(self) -> None:
        assert md.DriftMonitor is DriftMonitor
        assert md.reference_statistics is reference_statistics

    def test_a_composite_dispatches_predictions_to_it(self, reference: dict[str, Any]) -> None:
        m = monitor(reference, sample_rate=1.0, window=10, chunks=1)
        composite = CompositeMonitor([m])
        assert composite.observes_predictions
        batch = rows(random.Random(11), 10)
        composite.on_predictions(Predictions("m", "1", batch, outputs(batch)))
        assert m.drift("m")[0].observations == 10

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"sample_rate": 0.0}, "sample_rate"),
            ({"sample_rate": 1.5}, "sample_rate"),
            ({"window": 2, "chunks": 3}, "window"),
            ({"alpha": 1.0}, "alpha"),
        ],
    )
    def test_refuses_bad_options(
        self, reference: dict[str, Any], options: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            monitor(reference, **options)

    def test_refuses_a_reference_of_another_format(self) -> None:
        with pytest.raises(ValueError, match="reference_statistics"):
            DriftMonitor({"inputs": []}, registry=CollectorRegistry())


class TestThroughAService:
    @pytest.mark.parametrize("workers", [0, 2])
    def test_a_shift_is_flagged_from_served_requests(
        self, reference: dict[str, Any], workers: int
    ) -> None:
        m = monitor(reference, sample_rate=1.0, window=400)
        service = md.Service(
            md.predictor(outputs, batched=True, name="adder", version="3"),
            monitors=[m],
            workers=workers,
        )
        rng = random.Random(12)
        with service:
            for row in rows(rng, 400, shift=1.0):
                service.predict(row)
        drift = {d.feature: d for d in m.drift("adder")}
        assert drift["c"].detected
        assert drift["c"].observations == 400
        assert not drift["a"].detected
        assert {dict(k[1])["version"] for k in samples(m.registry)} == {"3"}
