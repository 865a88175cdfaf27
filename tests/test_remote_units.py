"""The remote backend's pure parts: OIP messages, metadata checks, the circuit breaker, settings, labels,
and the repositories ``model export-repository`` writes. No server needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crest_proxy.classifier import ClassifierSettings, load_classifier
from crest_proxy.classifier.breaker import CircuitBreaker
from crest_proxy.classifier.labels import find_labels
from crest_proxy.classifier.oip import ProtocolError, Signature, check_metadata, decode_logits, encode_request
from crest_proxy.classifier.packing import pad
from crest_proxy.classifier.repository import RepositoryOptions, mlserver_model_settings, triton_config
from crest_proxy.cli import main
from crest_proxy.errors import ModelNotAvailableError

SIGNATURE = Signature(inputs=("input_ids", "attention_mask"), output="logits", labels=2)
META = {
    "name": "crest",
    "inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
    ],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}],
}


def test_a_json_request_carries_both_tensors_flat_and_int64() -> None:
    batch = pad([[0, 7, 2], [0, 2]], pad_id=1)
    body = json.loads(encode_request(batch, SIGNATURE, binary=False).body)
    ids, mask = body["inputs"]
    assert ids == {"name": "input_ids", "shape": [2, 3], "datatype": "INT64", "data": [0, 7, 2, 0, 2, 1]}
    assert mask["data"] == [1, 1, 1, 1, 1, 0] and body["outputs"] == [{"name": "logits"}]


def test_a_binary_request_puts_the_tensors_after_the_json_header() -> None:
    batch = pad([[0, 7, 2]], pad_id=1)
    encoded = encode_request(batch, SIGNATURE, binary=True)
    split = int(encoded.headers["Inference-Header-Content-Length"])
    header = json.loads(encoded.body[:split])
    assert [i["parameters"]["binary_data_size"] for i in header["inputs"]] == [24, 24]
    assert np.frombuffer(encoded.body[split : split + 24], "<i8").tolist() == [0, 7, 2]


def test_logits_decode_from_json_nested_or_flat_and_from_binary() -> None:
    flat = {"outputs": [{"name": "logits", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    nested = {"outputs": [{"name": "logits", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    for answer in (flat, nested):
        logits = decode_logits(json.dumps(answer).encode(), {}, SIGNATURE, rows=2)
        assert logits.tolist() == [[1, 2], [3, 4]]
    raw = np.array([[1, 2], [3, 4]], dtype="<f4").tobytes()
    head = {
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}
        ]
    }
    text = json.dumps(head).encode()
    headers = {"inference-header-content-length": str(len(text))}
    assert decode_logits(text + raw, headers, SIGNATURE, rows=2).tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"outputs": []}, "no 'logits' output"),
        ({"outputs": [{"name": "logits", "datatype": "BYTES", "shape": [1, 2], "data": ["a"]}]}, "BYTES"),
        ({"outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}, "shape"),
        ({"outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 2], "data": [1, "NaN"]}]}, "NaN"),
    ],
)
def test_unusable_answers_are_protocol_errors(answer: dict[str, object], problem: str) -> None:
    with pytest.raises((ProtocolError, ValueError), match=problem):
        decode_logits(json.dumps(answer).encode(), {}, SIGNATURE, rows=1)


def test_a_not_json_answer_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_logits(b"<html>", {}, SIGNATURE, rows=1)


def test_metadata_of_the_exported_graph_passes_and_token_type_ids_is_sent_when_asked() -> None:
    assert check_metadata(META, num_labels=2) == SIGNATURE
    bert = {
        **META,
        "inputs": [*META["inputs"], {"name": "token_type_ids", "datatype": "INT64", "shape": [-1, -1]}],
    }
    assert check_metadata(bert, num_labels=2).inputs[-1] == "token_type_ids"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"inputs": META["inputs"][:1]}, "no input tensor 'attention_mask'"),
        (
            {"inputs": [{**META["inputs"][0], "datatype": "INT32"}, META["inputs"][1]]},
            "INT32, expected INT64",
        ),
        ({"outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]}, "3 columns"),
        ({"outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 2]}]}, "no output tensor 'logits'"),
        ({"inputs": [*META["inputs"], {"name": "pixels", "datatype": "FP32", "shape": [-1]}]}, "pixels"),
        ({"inputs": [{**META["inputs"][0], "shape": [-1]}, META["inputs"][1]]}, "2 dimensions"),
    ],
)
def test_metadata_mismatches_are_named(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        check_metadata({**META, **change}, num_labels=2)


def test_the_breaker_opens_after_the_threshold_and_lets_one_trial_through_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=5.0, clock=lambda: now[0])
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    assert not breaker.allow() and breaker.state().open and breaker.state().retry_in_s == 5.0
    now[0] = 5.0
    assert breaker.allow() and not breaker.allow()  # one trial, the rest still fail fast
    breaker.succeeded()
    assert breaker.allow() and not breaker.state().open


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"backend": "remote"}, "needs url=http"),
        ({"backend": "remote", "url": "triton:8000"}, "needs url=http"),
        ({"backend": "remote", "url": "http://x", "model_name": "a/b"}, "model_name"),
        ({"remote_timeout_s": 0}, "remote_timeout_s"),
        ({"remote_retries": -1}, "remote_retries"),
        ({"unsafe_label": " "}, "unsafe_label"),
    ],
)
def test_remote_settings_are_validated(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ClassifierSettings(**fields)  # type: ignore[arg-type]


GENERIC = {"0": "LABEL_0", "1": "LABEL_1"}


def test_generic_labels_fail_with_a_message_that_names_the_way_out() -> None:
    with pytest.raises(ModelNotAvailableError, match=r"--unsafe-label NAME\|INDEX"):
        find_labels(GENERIC, model="m")


@pytest.mark.parametrize(("choice", "index"), [("LABEL_1", 1), ("label_0", 0), ("1", 1), ("0", 0)])
def test_unsafe_label_picks_by_name_or_index(choice: str, index: int) -> None:
    labels = find_labels(GENERIC, model="m", unsafe_label=choice)
    assert labels.unsafe_index == index and labels.label_for(0.9) == GENERIC[str(index)]


@pytest.mark.parametrize("choice", ["LABEL_2", "7", "-1", "unsafe"])
def test_an_unsafe_label_that_names_nothing_is_refused(choice: str) -> None:
    with pytest.raises(ModelNotAvailableError, match="names no output"):
        find_labels(GENERIC, model="m", unsafe_label=choice)


def test_unsafe_label_overrides_even_recognisable_names() -> None:
    assert find_labels({"0": "safe", "1": "unsafe"}, model="m", unsafe_label="safe").unsafe_index == 0


def test_a_generic_checkpoint_loads_with_unsafe_label(trigger_model_dir: Path, tmp_path: Path) -> None:
    generic = tmp_path / "generic"
    generic.mkdir()
    for file in trigger_model_dir.iterdir():
        (generic / file.name).write_bytes(file.read_bytes())
    config = json.loads((generic / "config.json").read_text())
    config.update(id2label=GENERIC, label2id={"LABEL_0": 0, "LABEL_1": 1})
    (generic / "config.json").write_text(json.dumps(config))
    settings = {"model": str(generic), "backend": "torch", "quantize": False}
    with pytest.raises(ModelNotAvailableError, match="--unsafe-label"):
        load_classifier(ClassifierSettings(**settings))  # type: ignore[arg-type]
    clf = load_classifier(ClassifierSettings(**settings, unsafe_label="LABEL_1"))  # type: ignore[arg-type]
    try:
        assert [s.label for s in clf.classify_sync(["kaboom", "hello"])] == ["LABEL_1", "LABEL_0"]
    finally:
        clf.close()


def test_the_cli_passes_unsafe_label_and_reports_a_wrong_one(
    trigger_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["classify", "--model", str(trigger_model_dir), "--backend", "torch", "--no-quantize"]
    assert main([*argv, "--unsafe-label", "safe", "kaboom"]) == 0
    assert capsys.readouterr().out.startswith("unsafe\t0.0000")  # column "safe" is flagged: kaboom scores ~0
    assert main([*argv, "--unsafe-label", "LABEL_9", "kaboom"]) == 1
    assert "--unsafe-label 'LABEL_9' names no output" in capsys.readouterr().err


def test_the_triton_config_declares_the_graphs_tensors_batching_and_instance_kind() -> None:
    text = triton_config(RepositoryOptions("triton", instance="gpu"), 2, ("input_ids", "attention_mask"))
    assert 'backend: "onnxruntime"' in text and "max_batch_size: 32" in text
    assert '{ name: "attention_mask", data_type: TYPE_INT64, dims: [ -1 ] }' in text
    assert '{ name: "logits", data_type: TYPE_FP32, dims: [ 2 ] }' in text
    assert "dynamic_batching" in text and "kind: KIND_GPU" in text


def test_the_mlserver_settings_declare_what_the_proxy_validates() -> None:
    settings = mlserver_model_settings(RepositoryOptions("mlserver"), 2, ("input_ids", "attention_mask"))
    assert check_metadata(settings, num_labels=2) == SIGNATURE
    assert settings["implementation"] == "crest_onnx_runtime.CrestOnnxRuntime"


@pytest.mark.parametrize("fields", [{"format": "tfserving"}, {"format": "triton", "instance": "tpu"}])
def test_repository_options_are_validated(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        RepositoryOptions(**fields)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["triton", "mlserver"])
def test_export_repository_writes_a_servable_layout(
    fmt: str, trigger_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repo"
    argv = ["model", "export-repository", str(out), "--format", fmt, "--model", str(trigger_model_dir)]
    assert (
        main([*argv, "--cache-dir", str(tmp_path / "cache"), "--precision", "fp32", "--name", "guard"]) == 0
    )
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out / "guard") and "serve it with" in printed.err
    provenance = json.loads((out / "guard" / "crest-repository.json").read_text())
    assert provenance["precision"] == "fp32"
    if fmt == "triton":
        assert (out / "guard" / "1" / "model.onnx").is_file() and (out / "serve_pytriton.py").is_file()
        assert 'name: "guard"' in (out / "guard" / "config.pbtxt").read_text()
    else:
        settings = json.loads((out / "guard" / "model-settings.json").read_text())
        assert settings["name"] == "guard" and (out / "guard" / "crest_onnx_runtime.py").is_file()
        assert json.loads((out / "settings.json").read_text())["parallel_workers"] == 0
