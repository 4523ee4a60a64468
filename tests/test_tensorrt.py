"""TensorRT on a Paddle 3 (.json, PIR) export: the dynamic-shape ranges it needs are built from the export's own
input size (what a CPU build can check: TensorRT itself needs a GPU build), and --use_tensorrt on a CPU run is
one clear error."""
import paddle
import paddle.inference as paddle_infer
import pytest

from tests.conftest import run_script
from utils.errors import UsageError
from utils.inference import PaddleInferenceEngine, model_files


@pytest.fixture(scope="module")
def export_40px(tmp_path_factory):
    import models

    out = tmp_path_factory.mktemp("trt")
    paddle.seed(0)
    paddle.save(models.build_model("ResNet18", class_dim=10).state_dict(), str(out / "r18.pdparams"))
    run_script("infer.py", "--model=ResNet18", f"--pretrained_model={out / 'r18.pdparams'}", "--image_shape", "3",
               "40", "40", "--resize_short_size=40", "--save_inference=True", f"--model_save_dir={out}")
    return out / "ResNet18"


def test_tensorrt_shape_ranges_span_batch_1_to_the_batch_size_at_the_exports_input_size(export_40px):
    program, _params = model_files(str(export_40px))
    if not program.endswith(".json"):
        pytest.skip("a Paddle 2.6 (.pdmodel) export: TensorRT takes its batch from max_batch_size there")
    config = paddle_infer.Config(*model_files(str(export_40px)))
    assert not config.tensorrt_dynamic_shape_enabled()
    low, high, optimum = PaddleInferenceEngine.set_tensorrt_shapes(config, str(export_40px), max_batch=16)
    assert low == {"x": [1, 3, 40, 40]}
    assert high == optimum == {"x": [16, 3, 40, 40]}
    assert config.tensorrt_dynamic_shape_enabled()


def test_tensorrt_on_an_export_without_its_input_description_names_the_file(export_40px, tmp_path):
    (tmp_path / "preprocess.json").write_text('{"model": "ResNet18"}')
    with pytest.raises(UsageError, match="preprocess.json: no input name and shape for TensorRT.*re-export"):
        PaddleInferenceEngine.set_tensorrt_shapes(paddle_infer.Config(), str(tmp_path), max_batch=8)


@pytest.mark.skipif(paddle.device.is_compiled_with_cuda(), reason="checks the CPU build's refusal")
def test_predict_with_use_tensorrt_on_a_cpu_build_is_one_line(export_40px, digits_dir):
    proc = run_script("predict.py", f"--inference_model={export_40px}", f"--data_dir={digits_dir / 'val'}",
                      "--use_tensorrt=True", check=False)
    assert proc.returncode == 2
    assert "error: --use_tensorrt=True needs --use_gpu=True" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_half_precision_is_a_gpu_setting_refused_on_the_cpu_in_one_line(export_40px, tmp_path):
    image = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    for script, flags in (("predict.py", [f"--inference_model={export_40px}", f"--image_path={image}"]),
                          ("predict.py", [f"--inference_model={export_40px}", f"--image_path={image}",
                                          "--engine=onnxruntime", "--use_gpu=False"]),
                          ("eval.py", [f"--inference_model={export_40px}", f"--data_dir={tmp_path}"])):
        proc = run_script(script, *flags, "--precision=fp16", check=False)
        assert proc.returncode == 2, (script, proc.stderr[-1500:])
        assert "--precision fp16" in proc.stderr and "Traceback" not in proc.stderr
