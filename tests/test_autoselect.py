"""predict.py's default engine on CPU: chosen once per machine kind by a timed trial, cached beside the
export, reused, redone on another CPU, skipped by --engine/--precision, and never a path whose top-1
differs from fp32; eval.py reports the chosen engine and precision. The scripts run as processes: a trial
loads Paddle Inference, onnxruntime and OpenVINO side by side, and a pytest process that has held all three
crashed in a later in-process DALI pipeline (tests/test_dali.py). A test that plants a wrong engine runs
predict.main in a process of its own through a small driver."""
import json
import os
import shutil

import cv2
import numpy as np
import paddle
import pytest

from tests.conftest import run_script
from utils.cpu_features import cpu_features
from utils.inference import autoselect, selection

CLASSES = 10


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six small noisy pictures, labelled."""
    root = tmp_path_factory.mktemp("auto_images")
    rng = np.random.default_rng(5)
    lines = []
    for index in range(6):
        base = cv2.resize(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), (48, 40), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / f"img{index}.png"), cv2.add(base, rng.integers(0, 30, (40, 48, 3), dtype=np.uint8)))
        lines.append(f"img{index}.png {index}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def master_export(tmp_path_factory):
    """A tiny MobileNetV3 export (Paddle program + ONNX), random weights with spread-out logits."""
    import models
    from utils.export import export_onnx, missing_onnx_requirements, save_inference_model
    from utils.transforms import PreprocessConfig

    if missing_onnx_requirements():
        pytest.skip(f"{', '.join(missing_onnx_requirements())} not installed: pip install -r requirements-onnx.txt")
    paddle.seed(2)
    model = models.build_model("MobileNetV3_small_x0_25", class_dim=CLASSES)
    model.eval()
    fc = model.get_classifier()
    fc.weight.set_value(fc.weight * 20.0)  # logits a few units apart: no near ties between engines
    directory = save_inference_model(model, str(tmp_path_factory.mktemp("auto") / "export"), "MobileNetV3_small_x0_25",
                                     CLASSES, PreprocessConfig(crop_size=32, resize_short=36))
    export_onnx(directory)
    return directory


@pytest.fixture
def export(master_export, tmp_path):
    """A fresh copy per test, with no cached choice."""
    return shutil.copytree(master_export, tmp_path / "export")


# predict.main with utils.inference.selection.engine_for_export replaced by _instant_onnxruntime(wrong)
PLANTED = ("import sys; import cv2, predict; from tests.test_autoselect import _instant_onnxruntime; "
           "from utils.inference import selection; selection.engine_for_export = _instant_onnxruntime({wrong}); "
           "sys.exit(predict.main(sys.argv[1:]))")


def run_predict(export, images, *extra, planted=None):
    flags = [f"--inference_model={export}", f"--data_dir={images / 'list.txt'}", "--batch_size=8", "--topk=3",
             "--use_gpu=False", *extra]
    if planted is None:
        proc = run_script("predict.py", *flags)
    else:
        proc = run_script("-c", PLANTED.format(wrong=planted), *flags)
    return json.loads(proc.stdout), proc.stderr


def cache(export):
    with open(os.path.join(export, autoselect.CHOICE_FILE), encoding="utf-8") as handle:
        return json.load(handle)["choices"]


def test_choice_is_made_cached_with_the_cpu_and_reused(export, images):
    _, log = run_predict(export, images)
    cpu = cpu_features().model
    assert f"chosen on this CPU: {cpu}" in log, log
    [entry] = cache(export).values()
    assert entry["cpu"] == cpu and entry["threads"] >= 1
    assert (entry["engine"], entry["precision"]) in autoselect.CANDIDATES
    assert entry["trials"][0]["outcome"] == "matches fp32" and len(entry["trials"]) == len(autoselect.CANDIDATES)
    assert f"engine: {entry['engine']} {entry['precision']} (chosen" in log
    mtime = os.path.getmtime(os.path.join(export, autoselect.CHOICE_FILE))

    second, log = run_predict(export, images)
    assert "cached choice for this CPU" in log and "trying" not in log, log
    assert os.path.getmtime(os.path.join(export, autoselect.CHOICE_FILE)) == mtime
    reference, _ = run_predict(export, images, "--engine=inference", "--precision=fp32")
    assert [r["class_ids"][0] for r in second] == [r["class_ids"][0] for r in reference]


def test_choice_is_redone_when_the_cached_cpu_differs(export, images):
    run_predict(export, images)
    path = os.path.join(export, autoselect.CHOICE_FILE)
    [(key, entry)] = cache(export).items()
    other = {key.replace(entry["cpu"], "AMD EPYC 7B13"): {**entry, "cpu": "AMD EPYC 7B13"}}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"choices": other}, handle)

    _, log = run_predict(export, images)
    assert "chosen on this CPU" in log and "cached choice" not in log, log
    assert sorted(e["cpu"] for e in cache(export).values()) == sorted(["AMD EPYC 7B13", entry["cpu"]])


@pytest.mark.parametrize("flag", ["--engine=onnxruntime", "--precision=fp32"])
def test_engine_or_precision_flag_skips_the_choice(export, images, flag):
    _, log = run_predict(export, images, flag)
    assert "trying" not in log and "cached choice" not in log, log
    assert not os.path.exists(os.path.join(export, autoselect.CHOICE_FILE))


def _instant_onnxruntime(wrong: bool):
    """engine_for_export whose onnxruntime fp32 answers from memory after its first call (so it is the fastest
    candidate); with ``wrong`` its classes are shifted by one (a different top-1 on every image)."""
    real = selection.engine_for_export

    def build(engine, deployed, options, *args, **kwargs):
        built = real(engine, deployed, options, *args, **kwargs)
        if engine != "onnxruntime":
            return built
        remembered = {}

        def instant(batch):
            if "out" not in remembered:
                remembered["out"] = np.asarray(built(batch))
            return np.roll(remembered["out"], 1, axis=1) if wrong else remembered["out"]
        return instant

    return build


@pytest.mark.parametrize("wrong", [False, True])
def test_a_candidate_whose_top1_differs_from_fp32_is_never_chosen(export, images, wrong):
    records, log = run_predict(export, images, planted=wrong)
    [entry] = cache(export).values()
    onnx_trial = next(t for t in entry["trials"] if t["engine"] == "onnxruntime")
    if not wrong:  # the control: the instant engine is the fastest, so it is what a right one would be
        assert entry["engine"] == "onnxruntime", entry
        # ... and a later run on the cached onnxruntime choice never imports paddle (it costs seconds)
        proc = run_script("-X", "importtime", "predict.py", f"--inference_model={export}",
                          f"--data_dir={images / 'list.txt'}")
        assert "cached choice" in proc.stderr and len(json.loads(proc.stdout)) == 6, proc.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line}
        assert "onnxruntime" in imported and "paddle" not in imported
        return
    assert entry["engine"] != "onnxruntime", entry
    assert onnx_trial["outcome"].startswith("not kept: top-1 differs from fp32 on 6 of 6 images"), onnx_trial
    reference, _ = run_predict(export, images, "--engine=inference", "--precision=fp32")
    assert [r["class_ids"][0] for r in records] == [r["class_ids"][0] for r in reference]


def test_an_unwritable_cache_is_said_and_the_run_goes_on(export, images):
    os.mkdir(os.path.join(export, autoselect.CHOICE_FILE))  # a directory where the file should go: not writable
    records, log = run_predict(export, images)
    assert "could not cache it in" in log and len(records) == 6, log
    assert not [name for name in os.listdir(export) if name.endswith(".tmp")]  # no temporary file left


def test_eval_reports_the_chosen_engine_and_precision_with_its_accuracy(export, images, tmp_path):
    result_path = tmp_path / "eval.json"
    run_script("eval.py", f"--inference_model={export}", f"--data_dir={images}", f"--val_list={images / 'list.txt'}",
               "--batch_size=8", "--use_gpu=False", f"--save_json_path={result_path}")
    [entry] = cache(export).values()
    result = json.loads(result_path.read_text())
    assert (result["engine"], result["precision"]) == (entry["engine"], entry["precision"]), result
    assert result["samples"] == 6 and 0 <= result["top1"] <= result["top5"] <= 1


def test_same_top1_with_top5_scores_beyond_the_tolerance_is_not_a_match():
    reference = np.array([[4.0, 3.0, 1.0, 0.0, -1.0, -2.0]] * 2)
    rounding = reference + np.random.default_rng(0).normal(0, 0.01, reference.shape)  # bf16-sized noise
    moved = reference + np.array([0.0, 0.8, 0.0, 0.0, 0.0, 0.0])  # class 1 gains, class 0 stays first
    assert autoselect.scores_mismatch(reference, rounding) is None
    assert np.array_equal(moved.argmax(1), reference.argmax(1))
    assert "top-5 scores differ" in autoselect.scores_mismatch(reference, moved)
