"""CPU engines x precisions on one real export: EfficientNetLite0's ImageNet weights on 16 Imagenette images.

Paddle Inference fp32 is the reference. fp32 engines (onnxruntime, OpenVINO f32) must give its top-5 and
scores within 1e-4; bf16 (about 3 significant digits) must give its top-1 on every image whose fp32 top-1
leads the runner-up by more than BF16_MARGIN in softmax score, so a near-tie may flip but a broken bf16
path cannot pass. bf16 runs only where the CPU has AVX512-BF16/AMX; elsewhere its refusal line is tested.
The CPU-feature refusal is also tested on a fake AMD /proc/cpuinfo.
"""
import importlib.util
import json

import numpy as np
import pytest

from tests.conftest import IMAGENETTE, SHARED, run_script

LITE0_WEIGHTS = SHARED / "weights" / "EfficientNetLite0_pretrained.pdparams"
BF16_MARGIN = 0.05
ONNX_PACKAGES = ("paddle2onnx", "onnx", "onnxruntime", "onnx_graphsurgeon", "sympy")
MISSING_ONNX = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None

AMD_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni
"""
AMX_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx_vnni
"""

needs_shared = pytest.mark.skipif(not (LITE0_WEIGHTS.is_file() and IMAGENETTE.is_dir()),
                                  reason="needs ../shared (EfficientNetLite0 weights and Imagenette)")
needs_onnx = pytest.mark.skipif(bool(MISSING_ONNX), reason=f"{', '.join(MISSING_ONNX)} not installed: "
                                "pip install -r requirements-onnx.txt")
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO,
                                    reason="openvino not installed: pip install -r requirements-openvino.txt")


def test_cpuinfo_model_and_flags():
    from utils.cpu_features import bf16_support, int8_support, parse_cpuinfo

    amd, amx = parse_cpuinfo(AMD_CPUINFO), parse_cpuinfo(AMX_CPUINFO)
    assert amd.model == "AMD EPYC 7B13" and "avx2" in amd.flags and "avx512f" not in amd.flags
    assert amd.summary() == "AMD EPYC 7B13 (avx2)"
    assert bf16_support(amd) == ("this CPU (AMD EPYC 7B13) has no avx512_bf16 or amx_bf16: bf16 would run emulated "
                                 "and slower than fp32; use --precision fp32")
    assert "avx512_vnni" in int8_support(amd)
    assert bf16_support(amx) is None and int8_support(amx) is None
    assert amx.summary().endswith("(avx2, avx512f, avx512_bf16, amx_bf16, amx_int8, amx_tile, avx512_vnni, avx_vnni)")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """EfficientNetLite0 exported once by infer.py --save_inference=True, without --save_onnx: its
    inference.onnx is made by the first OpenVINO use (what test_openvino_converts_a_missing_onnx checks)."""
    if not (LITE0_WEIGHTS.is_file() and IMAGENETTE.is_dir()):
        pytest.skip("needs ../shared (EfficientNetLite0 weights and Imagenette)")
    if MISSING_ONNX:
        pytest.skip(f"{', '.join(MISSING_ONNX)} not installed: pip install -r requirements-onnx.txt")
    out = tmp_path_factory.mktemp("export")
    run_script("infer.py", "--model=EfficientNetLite0", f"--pretrained_model={LITE0_WEIGHTS.with_suffix('')}",
               "--save_inference=True", f"--model_save_dir={out}")
    return out / "EfficientNetLite0"


@pytest.fixture(scope="module")
def onnx_conversion(export):
    """The first OpenVINO engine on the export, which has no inference.onnx yet: (what it logged, the engine)."""
    if not HAS_OPENVINO:
        pytest.skip("openvino not installed: pip install -r requirements-openvino.txt")
    import contextlib
    import io

    assert not (export / "inference.onnx").exists()
    logged = io.StringIO()
    with contextlib.redirect_stderr(logged):
        engine = _engine("openvino", export, "fp32")
    return logged.getvalue(), engine


@pytest.fixture(scope="module")
def val_images(export, tmp_path_factory):
    """16 Imagenette val images spread over the 10 classes (1000-way labels): their list and their batch."""
    from utils.inference import iter_batches, load_export, read_image_list

    lines = [line for line in (IMAGENETTE / "val_list_in1k.txt").read_text().splitlines() if line.strip()]
    listed = tmp_path_factory.mktemp("list") / "val16.txt"
    listed.write_text("".join(f"{IMAGENETTE / line}\n" for line in lines[::len(lines) // 16][:16]))
    batch = next(iter_batches(read_image_list(str(listed)), load_export(str(export)).preprocess, 16))
    assert len(batch.good) == 16
    return listed, batch.images


def _engine(name, export, precision):
    from utils.inference import DeviceOptions, engine_for_export, load_export

    return engine_for_export(name, load_export(str(export)), DeviceOptions(cpu_threads=2, precision=precision))


@pytest.fixture(scope="module")
def reference(export, val_images):
    return _engine("inference", export, "fp32")(val_images[1])


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@needs_shared
@needs_openvino
def test_openvino_converts_a_missing_onnx_once(onnx_conversion, export, val_images, reference):
    logged, engine = onnx_conversion
    assert f"--engine openvino: {export} has no inference.onnx; converting it once" in logged
    assert "onnxruntime matches Paddle Inference" in logged
    assert (export / "inference.onnx").is_file()
    np.testing.assert_allclose(_softmax(engine(val_images[1])), _softmax(reference), atol=1e-4)
    # the next use reads the file written: no second conversion
    assert _engine("openvino", export, "fp32") is not None


@needs_shared
@pytest.mark.parametrize("engine", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
def test_fp32_engines_match_paddle_inference(engine, export, onnx_conversion, val_images, reference):
    from utils.inference import same_topk

    built = _engine(engine, export, "fp32")
    assert (built.name, built.precision) == (engine, "fp32")
    assert same_topk(built(val_images[1]), reference, 5) == (True, pytest.approx(0, abs=1e-4))


@needs_shared
@pytest.mark.parametrize("engine", ["inference", pytest.param("openvino", marks=needs_openvino)])
def test_bf16_gives_fp32_top1(engine, export, val_images, reference):
    from utils.cpu_features import bf16_support
    from utils.errors import UsageError

    refusal = bf16_support()
    if refusal:  # this CPU has no native bf16: the engine must refuse it, naming what is missing
        with pytest.raises(UsageError, match="avx512_bf16 or amx_bf16"):
            _engine(engine, export, "bf16")
        return
    built = _engine(engine, export, "bf16")
    assert (built.name, built.precision) == (engine, "bf16")
    logits = built(val_images[1])
    assert np.abs(logits - reference).max() > 0  # bf16 really ran: fp32 gives these logits to the last bit
    probs = np.sort(_softmax(reference), axis=1)
    clear = probs[:, -1] - probs[:, -2] > BF16_MARGIN
    assert clear.sum() >= 12, "most of these images have a clear fp32 winner"
    np.testing.assert_array_equal(logits.argmax(1)[clear], reference.argmax(1)[clear])


@needs_shared
@pytest.mark.parametrize("engine", ["inference", pytest.param("openvino", marks=needs_openvino)])
def test_precision_refused_on_a_cpu_without_the_instructions(engine, export, monkeypatch):
    from utils import cpu_features
    from utils.errors import UsageError

    monkeypatch.setattr(cpu_features, "_detected", cpu_features.parse_cpuinfo(AMD_CPUINFO))
    with pytest.raises(UsageError, match=r"^--precision bf16 \(--engine .*\): this CPU \(AMD EPYC 7B13\) has no "
                                         r"avx512_bf16 or amx_bf16: bf16 would run emulated"):
        _engine(engine, export, "bf16")
    with pytest.raises(UsageError, match=r"this CPU \(AMD EPYC 7B13\) has no avx512_vnni, avx_vnni, amx_int8"):
        _engine(engine, export, "int8")


@needs_shared
@needs_openvino
def test_predict_openvino_prints_the_same_json(export, onnx_conversion, val_images, reference):
    listed = val_images[0]
    proc = run_script("predict.py", f"--inference_model={export}", f"--data_dir={listed}", "--topk=3",
                      "--engine=openvino", "--batch_size=6")  # batches of 6, 6 and 4 on the one compiled model
    records = json.loads(proc.stdout)
    assert "engine openvino fp32" in proc.stderr
    assert [sorted(r) for r in records] == [["class_ids", "label_names", "path", "scores"]] * 16
    assert [r["path"] for r in records] == listed.read_text().split()[::2]
    expected_ids = np.argsort(-reference, axis=1, kind="stable")[:, :3]
    assert [r["class_ids"] for r in records] == expected_ids.tolist()
    np.testing.assert_allclose([r["scores"] for r in records],
                               np.take_along_axis(_softmax(reference), expected_ids, axis=1), atol=1e-4)


@needs_shared
def test_onnxruntime_refuses_bf16_in_one_line(export, onnx_conversion):
    from utils.errors import UsageError

    with pytest.raises(UsageError, match=r"^--precision bf16: --engine onnxruntime runs fp32 here; use --engine "
                                         r"inference or openvino for bf16/int8$"):
        _engine("onnxruntime", export, "bf16")
