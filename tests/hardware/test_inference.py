"""ONNX Runtime session choices made in hardware/inference.py."""

from __future__ import annotations

import pytest

from hardware.inference import check_threads, onnxruntime_session_options


def test_session_options_threads_and_spinning_only_within_a_run():
    import onnxruntime as ort

    options = onnxruntime_session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # spin between the ops of a run, but a predictor's other sessions must not find this one's pool still
    # spinning on the cores after it
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_thread_count_errors_name_the_value(bad):
    with pytest.raises(ValueError, match=f"threads={bad!r}"):
        check_threads(bad)


def test_only_paddle_inference_on_the_host_compiles_per_shape():
    from hardware import DeviceSpec
    from hardware.inference import shape_compiled
    from hardware.tables import DEFAULT_DEVICE, DEVICES

    host = DeviceSpec(DEFAULT_DEVICE)
    assert "per input shape" in shape_compiled("paddle_inference", host)
    assert shape_compiled("onnxruntime", host) is None
    accelerator = next(name for name in DEVICES if name != DEFAULT_DEVICE)
    assert shape_compiled("paddle_inference", DeviceSpec(accelerator)) is None
