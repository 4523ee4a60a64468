"""infer.py, predict.py, the export and eval.py --inference_model, run as a user runs them.

Parity: for the same images, infer.py (dygraph), predict.py (Paddle Inference) and the ONNX export
(onnxruntime) give the same top-k ids and softmax scores within 1e-4, on a ResNet and a MobileNetV3.
Random weights are fine for parity; they are made less degenerate first (BatchNorm statistics from a few
forward passes, classifier scaled) so the top-k is not a tie that any rounding could reorder.
"""
import importlib.util
import json
import os

import cv2
import numpy as np
import paddle
import pytest

from tests.conftest import SHARED, run_script

KNOWN_ANSWER = SHARED / "data" / "known_answer"
LITE0_WEIGHTS = SHARED / "weights" / "EfficientNetLite0_pretrained.pdparams"
SIZE = ["--image_shape", "3", "64", "64", "--resize_short_size=72"]
CLASSES = 10
TOPK = 3
TOLERANCE = 1e-4
ONNX_PACKAGES = ("paddle2onnx", "onnx", "onnxruntime", "onnx_graphsurgeon", "sympy")
MISSING_ONNX = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
needs_onnx = pytest.mark.skipif(bool(MISSING_ONNX), reason=f"{', '.join(MISSING_ONNX)} not installed: "
                                "pip install -r requirements-onnx.txt")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight small photos-like images (PNG and JPEG, odd sizes, one grayscale), a labelled list, and a
    folder with one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    lines = []
    for index in range(8):
        height, width = 60 + 7 * index, 90 - 3 * index
        base = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (width, height),
                          interpolation=cv2.INTER_CUBIC)
        noise = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
        image = cv2.add(base, noise)
        if index == 5:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        name = f"sub/img{index}.{'png' if index % 2 else 'jpg'}"
        os.makedirs(root / "sub", exist_ok=True)
        cv2.imwrite(str(root / name), image)
        lines.append(f"{name} {index % CLASSES}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def realistic_random_weights(name, images_dir, path, seed=1):
    """Random weights with BatchNorm statistics of real inputs and logits spread to a std of ~2."""
    import models
    from utils.transforms import PreprocessConfig, eval_transform, read_image

    paddle.seed(seed)
    model = models.build_model(name, class_dim=CLASSES)
    cfg = PreprocessConfig(crop_size=64, resize_short=72)
    batch = paddle.to_tensor(np.stack([eval_transform(read_image(str(p)), cfg)
                                       for p in sorted((images_dir / "sub").glob("img*"))]))
    model.train()
    with paddle.no_grad():
        for _ in range(30):
            model(batch)
        model.eval()
        spread = float(model(batch).numpy().std(axis=1).mean())
        fc = model.get_classifier()
        fc.weight.set_value(fc.weight * (2.0 / max(spread, 1e-6)))
    paddle.save(model.state_dict(), str(path))
    return path


def results(proc):
    return json.loads(proc.stdout)


def assert_same_topk(reference, other, what):
    assert [r["path"] for r in reference] == [r["path"] for r in other], what
    for ref, got in zip(reference, other):
        if "error" in ref:
            assert "error" in got, (what, got)
            continue
        assert ref["class_ids"] == got["class_ids"], (what, ref, got)
        assert ref["label_names"] == got["label_names"], (what, ref, got)
        assert np.allclose(ref["scores"], got["scores"], atol=TOLERANCE, rtol=0), (what, ref, got)


def assert_not_a_tie(records):
    """The parity check means something only if neighbouring top-k scores are clearly apart."""
    for record in records:
        if "scores" in record:
            gaps = -np.diff(record["scores"])
            assert gaps.min() > 10 * TOLERANCE, f"test weights give a near tie: {record}"


@pytest.fixture(scope="module", params=["ResNet18", "MobileNetV3_small_x0_25"])
def exported(request, images, tmp_path_factory):
    """infer.py --engine dygraph on the folder, exporting the model (and ONNX when available)."""
    name = request.param
    out = tmp_path_factory.mktemp(name)
    weights = realistic_random_weights(name, images, out / "w.pdparams")
    names = out / "names.txt"
    names.write_text("".join(f"class {i}\n" for i in range(CLASSES)))  # one name per line
    proc = run_script("infer.py", f"--model={name}", f"--pretrained_model={weights}", *SIZE,
                      f"--data_dir={images / 'sub'}", f"--topk={TOPK}", "--engine=dygraph", "--batch_size=3",
                      f"--class_map_path={names}", "--save_inference=True", f"--save_onnx={not MISSING_ONNX}",
                      f"--model_save_dir={out}", f"--save_json_path={out / 'dygraph.json'}")
    return {"name": name, "dir": out / name, "weights": weights, "dygraph": results(proc), "proc": proc}


def test_infer_prints_and_writes_one_record_per_image_and_exports(exported, images):
    records = exported["dygraph"]
    assert json.loads((exported["dir"].parent / "dygraph.json").read_text()) == records
    paths = [os.path.basename(r["path"]) for r in records]
    assert paths == ["broken.jpg"] + [f"img{i}.{'png' if i % 2 else 'jpg'}" for i in range(8)]  # sorted walk
    assert "error" in records[0] and "broken.jpg" in records[0]["error"]
    for record in records[1:]:
        assert set(record) == {"path", "class_ids", "scores", "label_names"}
        assert len(record["class_ids"]) == TOPK and record["scores"] == sorted(record["scores"], reverse=True)
        assert record["label_names"] == [f"class {i}" for i in record["class_ids"]]
        assert 0 < sum(record["scores"]) <= 1 + 1e-6
    assert_not_a_tie(records)
    files = set(os.listdir(exported["dir"]))
    assert {"inference.pdiparams", "preprocess.json", "labels.txt"} <= files
    assert "inference.json" in files or "inference.pdmodel" in files
    meta = json.loads((exported["dir"] / "preprocess.json").read_text())
    assert meta["model"] == exported["name"] and meta["class_dim"] == CLASSES
    assert meta["preprocess"]["crop_size"] == 64 and meta["preprocess"]["resize_short"] == 72


def test_predict_with_paddle_inference_matches_dygraph(exported, images):
    proc = run_script("predict.py", f"--inference_model={exported['dir']}", f"--data_dir={images / 'sub'}",
                      f"--topk={TOPK}", "--batch_size=4", "--cpu_threads=2", "--engine=inference")
    assert_same_topk(exported["dygraph"], results(proc), "Paddle Inference vs dygraph")


@needs_onnx
def test_onnx_export_in_onnxruntime_matches_dygraph(exported, images):
    assert (exported["dir"] / "inference.onnx").is_file()
    assert "onnxruntime matches dygraph" in exported["proc"].stderr
    proc = run_script("predict.py", f"--inference_model={exported['dir']}", f"--data_dir={images / 'sub'}",
                      f"--topk={TOPK}", "--engine=onnxruntime")
    assert_same_topk(exported["dygraph"], results(proc), "onnxruntime vs dygraph")


def test_infer_default_engine_on_cpu_is_paddle_inference_with_the_same_answers(exported, images):
    proc = run_script("infer.py", f"--model={exported['name']}", f"--pretrained_model={exported['weights']}",
                      *SIZE, f"--data_dir={images / 'sub'}", f"--topk={TOPK}",
                      f"--class_map_path={exported['dir'] / 'labels.txt'}")
    assert "engine: inference (first batch matches dygraph" in proc.stderr
    assert_same_topk(exported["dygraph"], results(proc), "infer.py default engine vs dygraph")


def test_eval_of_the_export_equals_eval_of_the_dygraph_model(exported, images):
    common = [f"--data_dir={images}", "--val_list=list.txt", "--reader_thread=0", "--batch_size=3"]
    json_a, json_b = exported["dir"].parent / "eval_dygraph.json", exported["dir"].parent / "eval_export.json"
    run_script("eval.py", f"--model={exported['name']}", f"--pretrained_model={exported['weights']}", *SIZE,
               "--engine=dygraph", *common, f"--save_json_path={json_a}")
    run_script("eval.py", f"--inference_model={exported['dir']}", *common, f"--save_json_path={json_b}",
               "--engine=inference")
    dygraph, deployed = json.loads(json_a.read_text()), json.loads(json_b.read_text())
    assert deployed["engine"] == "inference" and dygraph["engine"] == "dygraph"
    assert deployed["samples"] == dygraph["samples"] == 8
    assert (deployed["top1"], deployed["top5"]) == (dygraph["top1"], dygraph["top5"])
    proc = run_script("predict.py", f"--inference_model={exported['dir']}", f"--data_dir={images / 'list.txt'}",
                      "--eval=True", "--engine=inference")
    assert f"top1 {dygraph['top1']:.4f} top5 {dygraph['top5']:.4f} samples 8" in proc.stderr


def test_readable_label_file_is_the_generated_imagenet_list():
    from utils.inference import DEFAULT_CLASS_MAP, read_class_map

    names = read_class_map(DEFAULT_CLASS_MAP, 1000)
    assert (names[0], names[153], names[967]) == ("tench, Tinca tinca", "Maltese dog, Maltese terrier, Maltese",
                                                   "espresso")
    assert os.path.isfile(os.path.join(os.path.dirname(DEFAULT_CLASS_MAP), "make_readable_label.py"))


@pytest.mark.skipif(not (KNOWN_ANSWER.is_dir() and LITE0_WEIGHTS.is_file()), reason=f"{SHARED} not present")
def test_efficientnet_lite0_known_answers_through_infer_and_predict(tmp_path):
    expected = {"ILSVRC2012_val_00000010.jpeg": 153, "ILSVRC2012_val_00020010.jpeg": 178,
                "ILSVRC2012_val_00030010.jpeg": 80, "coffee.png": 967}
    images = tmp_path / "images"
    images.mkdir()
    for name in expected:
        (images / name).write_bytes((KNOWN_ANSWER / name).read_bytes())
    # --engine dygraph: the reference; the export (and its ONNX, whose asymmetric 'SAME' pads paddle2onnx
    # 2.1 alone gets wrong) must reproduce it
    proc = run_script("infer.py", "--model=EfficientNetLite0", f"--pretrained_model={LITE0_WEIGHTS}",
                      f"--data_dir={images}", "--topk=5", "--engine=dygraph", "--save_inference=True",
                      f"--save_onnx={not MISSING_ONNX}", f"--model_save_dir={tmp_path}")
    by_file = {os.path.basename(r["path"]): r for r in results(proc)}
    assert {name: r["class_ids"][0] for name, r in by_file.items()} == expected
    assert by_file["coffee.png"]["label_names"][0] == "espresso"
    export = tmp_path / "EfficientNetLite0"
    single = run_script("predict.py", f"--inference_model={export}", f"--image_path={images / 'coffee.png'}")
    assert results(single)[0]["class_ids"] == [967]
    engines = ["inference"] + ([] if MISSING_ONNX else ["onnxruntime"])
    for engine in engines:
        batch = run_script("predict.py", f"--inference_model={export}", f"--data_dir={images}", "--topk=5",
                           f"--engine={engine}")
        assert_same_topk(results(proc), results(batch), f"predict.py --engine {engine} vs infer.py dygraph")


@pytest.fixture(scope="module")
def resnet_weights(images, tmp_path_factory):
    return realistic_random_weights("ResNet18", images, tmp_path_factory.mktemp("w") / "r18.pdparams")


@pytest.mark.parametrize("extra, message", [
    (["--topk=11"], "--topk 11 is larger than the number of classes (10)"),
    (["--image_path=/nonexistent.jpg"], "--image_path /nonexistent.jpg: no such file"),
    (["--data_dir=/nonexistent_dir"], "--data_dir /nonexistent_dir: no such folder or list file"),
    (["--image_path=x.jpg", "--data_dir=."], "give exactly one of --image_path"),
    (["--class_map_path=BADMAP"], "names 2 classes but the model has 10"),
])
def test_infer_user_errors_are_one_line_with_exit_code_2(images, resnet_weights, tmp_path, extra, message):
    bad_map = tmp_path / "map.txt"
    bad_map.write_text("0 zero\n1 one\n")
    extra = [e.replace("BADMAP", str(bad_map)) for e in extra]
    if not any(e.startswith(("--image_path", "--data_dir")) for e in extra):
        extra.append(f"--data_dir={images / 'sub'}")
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={resnet_weights}", *SIZE, *extra,
                      check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_every_image_unreadable_exits_1_with_error_records(resnet_weights, tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "b.jpg").write_bytes(b"")
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={resnet_weights}", *SIZE,
                      f"--data_dir={tmp_path}", "--engine=dygraph", check=False)
    assert proc.returncode == 1
    records = results(proc)
    assert [os.path.basename(r["path"]) for r in records] == ["a.png", "b.jpg"]
    assert all(set(r) == {"path", "error"} for r in records)


def test_predict_refuses_a_directory_without_an_export(tmp_path):
    proc = run_script("predict.py", f"--inference_model={tmp_path}", f"--image_path={tmp_path}/x.jpg", check=False)
    assert proc.returncode == 2
    assert "no exported model" in proc.stderr and "Traceback" not in proc.stderr


def test_benchmark_infer_runs_all_engines_in_one_table():
    from utils.cpu_features import cpu_features

    engines = ["dygraph", "inference", "inference-int8", "openvino-bf16"] + ([] if MISSING_ONNX else ["onnxruntime"])
    proc = run_script("benchmark.py", "infer", "--models", "ResNet18", "--batch_sizes", "1", "2", "--runs=1",
                      "--image_size=64", "--auto_images=4", "--engines", *engines)
    assert proc.stdout.startswith(f"CPU: {cpu_features().model}; avx512_bf16 "), proc.stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in proc.stdout.splitlines()
            if line.startswith("| ResNet18 |")]
    assert all(len(row) == 3 + 2 * 2 + 1 for row in rows), proc.stdout
    paths = [(row[1], row[2]) for row in rows]
    wanted = [(e.partition("-")[0], e.partition("-")[2] or "fp32") for e in engines]
    assert paths[:-1] == wanted and paths[-1][0].startswith("default: "), proc.stdout
    default = (paths[-1][0].removeprefix("default: "), paths[-1][1])
    for row in rows:  # figures, or the reason it did not run (a numbered line below the table)
        numbers = row[3:7]
        if row[1].startswith("default: ") and default not in wanted:
            assert numbers == ["-"] * 4 and "was not timed here" in row[7], row
        elif row[7].startswith("not run: see ("):
            assert numbers == ["-"] * 4 and f"\n{row[7].removeprefix('not run: see ')} " in proc.stdout, row
        else:
            assert all(float(value) > 0 for value in numbers), row
    assert any(row[7].startswith("not run") for row in rows if row[1:3] == ["inference", "int8"]), proc.stdout
