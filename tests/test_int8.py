"""int8 post-training quantization through the scripts, on EfficientNetLite0's real weights and real Imagenette
photographs: infer.py --save_inference=True --calib_list calibrates the export (NNCF, OpenVINO IR in int8/),
predict.py/eval.py --engine openvino --precision int8 run it; a missing or stale int8 model is one clear line.

Calibration here uses 32 train images (the README's recipe uses 300; 32 keeps CI fast and was measured to give
the same agreement with fp32, see test_int8_top1_matches_fp32)."""
import importlib.util
import json
import os
import re
import shutil

import pytest

from tests.conftest import IMAGENETTE, SHARED, run_script

WEIGHTS = SHARED / "weights" / "EfficientNetLite0_pretrained.pdparams"
pytestmark = [
    pytest.mark.skipif(not (WEIGHTS.exists() and (IMAGENETTE / "val_list_in1k.txt").exists()),
                       reason="../shared weights or Imagenette not present"),
    pytest.mark.skipif(any(importlib.util.find_spec(name) is None for name in ("openvino", "nncf")),
                       reason="openvino/nncf not installed: pip install -r requirements-openvino.txt"),
]


def _int8_cpu_refusal():
    from utils.cpu_features import int8_support

    return int8_support()


needs_int8_cpu = pytest.mark.skipif(_int8_cpu_refusal() is not None,
                                    reason=f"serving int8 is refused on this CPU: {_int8_cpu_refusal()}")


def _absolute_subset(list_name: str, target, count: int):
    """``count`` evenly spaced lines of an Imagenette list (sorted by class: every class appears), absolute paths."""
    lines = [line for line in (IMAGENETTE / list_name).read_text().splitlines() if line.strip()]
    chosen = lines[::len(lines) // count][:count]
    target.write_text("".join(f"{IMAGENETTE / line}\n" for line in chosen))
    return target


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """An export of EfficientNetLite0 with its int8 model, made through infer.py's export route."""
    root = tmp_path_factory.mktemp("int8")
    calib = _absolute_subset("train_list_in1k.txt", root / "calib.txt", 32)
    proc = run_script("infer.py", "--model=EfficientNetLite0", f"--pretrained_model={WEIGHTS.with_suffix('')}",
                      "--class_dim=1000", "--save_inference=True", f"--model_save_dir={root}",
                      f"--calib_list={calib}", timeout=300)
    return root / "EfficientNetLite0", proc.stderr


def _predict(export, images, precision, **kwargs):
    """predict.py on a list file, or on one image file"""
    source = f"--data_dir={images}" if str(images).endswith(".txt") else f"--image_path={images}"
    return run_script("predict.py", f"--inference_model={export}", source, "--engine=openvino",
                      f"--precision={precision}", "--batch_size=16", **kwargs)


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and proc.stdout.strip() == "", proc.stderr[-2000:]
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[-1]


def test_calibration_reports_agreement_and_records_it(calibrated):
    export, log = calibrated
    found = re.search(r"wrote (\S+) \(openvino int8.*top-1 equals fp32's on ([0-9.]+)% of the 32 calibration", log)
    assert found, log[-2000:]
    assert found.group(1) == str(export / "int8" / "openvino.xml") and (export / "int8" / "openvino.bin").is_file()
    record = json.loads((export / "int8" / "calibration.json").read_text())
    assert record["images"] == 32 and record["tool"].startswith("nncf ")
    # measured 90.6% (29/32) on these images; a wrong preprocessing or broken ranges gives far less
    assert record["models"]["openvino"]["top1_agreement_with_fp32"] >= 0.8
    assert float(found.group(2)) == pytest.approx(100 * record["models"]["openvino"]["top1_agreement_with_fp32"],
                                                  abs=0.06)


@needs_int8_cpu
def test_int8_top1_matches_fp32(calibrated, tmp_path):
    """Same top-1 as fp32 on at least 28 of 32 val images (not seen in calibration). int8 moves scores by about a
    percent, so it flips only near-ties between classes: measured 30/32 here, and 369/400 (92%) on 400 val images
    (1000-way outputs on 10-class photos have many near-ties); a calibration on 4 images got 295/400."""
    export, _ = calibrated
    images = _absolute_subset("val_list_in1k.txt", tmp_path / "val.txt", 32)
    int8 = _predict(export, images, "int8")
    fp32 = _predict(export, images, "fp32")
    assert "engine openvino int8" in int8.stderr, int8.stderr[-2000:]
    top1 = {name: [record["class_ids"][0] for record in json.loads(proc.stdout)] for name, proc in
            (("int8", int8), ("fp32", fp32))}
    same = sum(a == b for a, b in zip(top1["int8"], top1["fp32"]))
    assert len(top1["int8"]) == 32 and same >= 28, (same, top1)


@needs_int8_cpu
def test_missing_int8_model_is_one_line(calibrated, tmp_path):
    export, _ = calibrated
    bare = tmp_path / "export"
    shutil.copytree(export, bare, ignore=shutil.ignore_patterns("int8"))
    image = IMAGENETTE / (IMAGENETTE / "val_list.txt").read_text().split()[0]
    line = _error_line(_predict(bare, image, "int8", check=False))
    assert line == (f"error: {bare}: no int8 model (int8/openvino.xml); calibrate it with: python -m utils.quantize "
                    f"--inference_model {bare} --calib_list LIST (a few hundred 'path [label]' images)")


@needs_int8_cpu
def test_stale_int8_model_is_one_line_and_a_newer_one_is_used(calibrated, tmp_path):
    export, _ = calibrated
    copy = tmp_path / "export"
    shutil.copytree(export, copy)  # copy2 keeps the times: the int8 model stays newer than the parameters
    params = copy / "inference.pdiparams"
    earlier = params.stat().st_mtime - 10
    os.utime(copy / "int8" / "openvino.xml", (earlier, earlier))  # as if the export was redone after calibration
    image = IMAGENETTE / (IMAGENETTE / "val_list.txt").read_text().split()[0]
    line = _error_line(_predict(copy, image, "int8", check=False))
    assert line.startswith(f"error: {copy / 'int8' / 'openvino.xml'} is older than {params}: ") and line.endswith(
        f"calibrate again with: python -m utils.quantize --inference_model {copy} --calib_list LIST"), line
    now = params.stat().st_mtime + 10  # a model calibrated after the export is used again
    os.utime(copy / "int8" / "openvino.xml", (now, now))
    assert json.loads(_predict(copy, image, "int8").stdout)[0]["class_ids"]


def test_paddle_inference_int8_is_refused_in_one_line(calibrated):
    export, _ = calibrated
    proc = run_script("-m", "utils.quantize", f"--inference_model={export}", "--calib_list=unused.txt",
                      "--engines=openvino,inference", check=False)
    assert _error_line(proc).startswith("error: --engines inference: --engine inference --precision int8 is not "
                                        "offered: "), proc.stderr[-2000:]
    if _int8_cpu_refusal() is None:  # elsewhere predict.py refuses int8 for the missing VNNI/AMX first
        image = IMAGENETTE / (IMAGENETTE / "val_list.txt").read_text().split()[0]
        proc = run_script("predict.py", f"--inference_model={export}", f"--image_path={image}", "--engine=inference",
                          "--precision=int8", check=False)
        line = _error_line(proc)
        assert line.startswith("error: --engine inference --precision int8 is not offered: ") and line.endswith(
            "int8 runs on --engine openvino --precision int8"), line


def test_unreadable_calibration_image_is_one_line(calibrated, tmp_path):
    export, _ = calibrated
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a JPEG")
    calib = tmp_path / "calib.txt"
    calib.write_text(f"{IMAGENETTE / (IMAGENETTE / 'val_list.txt').read_text().split()[0]} 0\n{broken} 0\n")
    proc = run_script("-m", "utils.quantize", f"--inference_model={export}", f"--calib_list={calib}", check=False)
    line = _error_line(proc)
    assert line.startswith(f"error: --calib_list {calib}: {broken}"), line
    assert line.endswith("; fix or remove that line"), line
    assert "int8 model" not in proc.stderr


def test_calib_list_needs_an_export():
    proc = run_script("infer.py", "--model=EfficientNetLite0", "--calib_list=calib.txt", "--image_path=x.jpg",
                      check=False)
    assert _error_line(proc) == ("error: --calib_list calib.txt: calibrates an export; add --save_inference=True "
                                 "(or run python -m utils.quantize --inference_model DIR --calib_list LIST on an "
                                 "existing export)")


@needs_int8_cpu
def test_int8_and_bf16_top1_within_0_3_points_of_fp32(calibrated, tmp_path):
    """The issue's accuracy check on a fixed subset for CI time: 400 images evenly spaced over Imagenette's
    val_list_in1k (1000-way). The full list (3,925 images) was run by hand; see the README. int8 and bf16 must
    not lose more than 0.3 points of top-1 against fp32 (one-sided: they may come out higher; measured here:
    fp32 302/400, bf16 303/400, int8 306/400)."""
    from utils.cpu_features import bf16_support

    export, _ = calibrated
    val = _absolute_subset("val_list_in1k.txt", tmp_path / "val.txt", 400)
    precisions = ["fp32", "int8"] + ([] if bf16_support() else ["bf16"])
    top1 = {}
    for precision in precisions:
        out = tmp_path / f"{precision}.json"
        run_script("eval.py", f"--inference_model={export}", f"--data_dir={IMAGENETTE}", f"--val_list={val}",
                   "--engine=openvino", f"--precision={precision}", "--batch_size=16", "--reader_thread=2",
                   f"--save_json_path={out}", timeout=300)
        result = json.loads(out.read_text())
        assert result["samples"] == 400, result
        top1[precision] = result["top1"]
    assert top1["fp32"] > 0.7, top1  # the real weights really ran
    for precision in precisions[1:]:
        assert top1[precision] >= top1["fp32"] - 0.003, top1
