"""What the classic PaddleCV image_classification suite's README tells a user to type (issue 12), through the
scripts: classic flag spellings and units, folder data sets, the ImageNet download script, Fluid weights."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import paddle
import pytest

from tests.conftest import IMAGENETTE, ROOT, run_script, subset_list

TINY = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32"]


def config_value(stdout: str, name: str) -> str:
    """The value train.py's configuration block prints for ``name``."""
    match = re.search(rf"^\s*{name} : (.*)$", stdout, re.MULTILINE)
    assert match, f"{name} not in the printed configuration"
    return match.group(1).strip()


def test_classic_flag_spellings_and_units_are_converted(digits_dir, tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "train.txt", 32)
    subset_list(digits_dir / "val_list.txt", tmp_path / "val.txt", 16)
    out = run_script("train.py", *TINY, f"--data_dir={digits_dir}", f"--train_list={tmp_path / 'train.txt'}",
                     f"--val_list={tmp_path / 'val.txt'}", "--validate=False", "--batch_size=16", "--num_epochs=1",
                     "--max_iter=1", "--reader_thread=2", f"--model_save_dir={tmp_path / 'out'}",
                     f"--profilier_path={tmp_path / 'prof'}", "--reader_buf_size=128", "--same_feed=32")
    assert config_value(out.stdout, "profiler_path") == str(tmp_path / "prof")
    # 128 samples over 2 workers x 16 images per batch: 4 batches per worker; 32 images: 2 batches
    assert config_value(out.stdout, "reader_buf_size") == "4"
    assert config_value(out.stdout, "same_feed") == "2"
    assert "--reader_buf_size 128 counts samples" in out.stderr and "--prefetch_batches 4" in out.stderr
    both = run_script("train.py", *TINY, f"--data_dir={digits_dir}", "--reader_buf_size=64", "--prefetch_batches=2",
                      check=False)
    assert both.returncode == 2 and "error: --reader_buf_size and --prefetch_batches: give one" in both.stderr
    assert "Traceback" not in both.stderr


# ---------------------------------------------------------------- folder data sets (item 6)

FOLDER_CLASSES = ["zebra", "Ant", "mole", "bee"]  # sorted: Ant, bee, mole, zebra (upper case first)


@pytest.fixture(scope="module")
def folder_set(digits_dir, tmp_path_factory):
    """train/<class>/ and val/<class>/ of digits PNGs, no list files; the i-th class in sorted order has
    i + 1 validation images, so the per-class counts show which id each folder got."""
    root = tmp_path_factory.mktemp("folders")
    for digit, name in enumerate(FOLDER_CLASSES):
        rank = sorted(FOLDER_CLASSES).index(name)
        for split, count in (("train", 4), ("val", rank + 1)):
            target = root / split / name / "sub"
            target.mkdir(parents=True)
            for image in sorted((digits_dir / split / str(digit)).iterdir())[:count]:
                shutil.copy(image, target / image.name)
    return root


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    from models import build_model

    paddle.seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pdparams"
    paddle.save(build_model("ResNet18", class_dim=len(FOLDER_CLASSES)).state_dict(), str(path))
    return path


@pytest.mark.parametrize("use_dali", [False, True])
def test_eval_reads_a_folder_data_set_with_sorted_class_ids(folder_set, random_weights, tmp_path, use_dali):
    if use_dali and importlib.util.find_spec("nvidia.dali") is None:
        pytest.skip("NVIDIA DALI not installed (pip install -r requirements-dali.txt)")
    report = tmp_path / "eval.json"
    run_script("eval.py", *TINY, f"--data_dir={folder_set}", f"--pretrained_model={random_weights}",
               "--reader_thread=0", f"--use_dali={use_dali}", f"--save_json_path={report}")
    result = json.loads(report.read_text())
    assert result["samples"] == 1 + 2 + 3 + 4 and result["skipped"] == 0
    rows = sorted(result["per_class"], key=lambda row: row["class_id"])
    assert [row["name"] for row in rows] == sorted(FOLDER_CLASSES)
    assert [row["support"] for row in rows] == [1, 2, 3, 4]


def test_train_on_a_folder_data_set_writes_labels_and_eval_uses_them(folder_set, tmp_path):
    out = tmp_path / "out"
    run_script("train.py", *TINY, f"--data_dir={folder_set}", "--batch_size=8", "--test_batch_size=8",
               "--num_epochs=1", "--reader_thread=0", f"--model_save_dir={out}")
    checkpoint = out / "ResNet18" / "0"
    assert (checkpoint / "labels.txt").read_text().split() == \
        [word for index, name in enumerate(sorted(FOLDER_CLASSES)) for word in (str(index), name)]
    # evaluated over a list (which carries no names), the classes are named by the checkpoint's labels.txt
    listed = tmp_path / "val_list.txt"
    listed.write_text("".join(f"{path} {sorted(FOLDER_CLASSES).index(path.parent.parent.name)}\n"
                              for path in sorted((folder_set / "val").rglob("*.png"))))
    report = tmp_path / "eval.json"
    run_script("eval.py", *TINY, f"--data_dir={folder_set}", f"--val_list={listed}", f"--pretrained_model={checkpoint}",
               "--reader_thread=0", f"--save_json_path={report}")
    rows = sorted(json.loads(report.read_text())["per_class"], key=lambda row: row["class_id"])
    assert [row["name"] for row in rows] == sorted(FOLDER_CLASSES)
    # infer.py names its predictions by the same labels.txt, and its export carries them to predict.py
    image = next((folder_set / "val" / "mole").rglob("*.png"))
    exports = tmp_path / "exports"
    inferred = run_script("infer.py", *TINY, f"--image_path={image}", f"--pretrained_model={checkpoint}",
                          "--topk=4", "--save_inference=True", f"--model_save_dir={exports}")
    predicted = run_script("predict.py", f"--inference_model={exports / 'ResNet18'}", f"--image_path={image}",
                           "--topk=4")
    for stdout in (inferred.stdout, predicted.stdout):
        assert sorted(json.loads(stdout)[0]["label_names"]) == sorted(FOLDER_CLASSES)
    assert (exports / "ResNet18" / "labels.txt").read_text() == (checkpoint / "labels.txt").read_text()


def test_dali_trains_on_a_folder_data_set_with_the_sorted_class_ids(folder_set, tmp_path):
    pytest.importorskip("nvidia.dali", reason="DALI is not installed (pip install -r requirements-dali.txt)")
    out = tmp_path / "out"
    proc = run_script("train.py", *TINY, f"--data_dir={folder_set}", "--batch_size=8", "--test_batch_size=8",
                      "--num_epochs=1", "--use_dali=True", f"--model_save_dir={out}")
    assert (out / "ResNet18" / "0" / "labels.txt").read_text().split()[1::2] == sorted(FOLDER_CLASSES)
    # the sorted folder order gives class i (i + 1 validation images): the validation saw 1+2+3+4 images
    assert re.search(r"\[val\] epoch 0 top1 \S+ top5 \S+ samples 10 ", proc.stdout + proc.stderr), \
        (proc.stdout + proc.stderr)[-3000:]


def test_missing_list_and_folder_is_one_clear_error(tmp_path):
    proc = run_script("eval.py", *TINY, f"--data_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "val_list.txt: list file not found, and no folder data set" in proc.stderr


# ---------------------------------------------------------------- ImageNet download script (item 7)

DOWNLOAD_SCRIPT = ROOT / "data" / "ILSVRC2012" / "download_imagenet2012.sh"
VAL_LABELS = ROOT / "data" / "ILSVRC2012" / "ILSVRC2012_val_labels.txt"


def _tar(target, members: dict):
    with tarfile.open(target, "w") as archive:
        for name, path in members.items():
            archive.add(path, arcname=name)


def test_download_script_runs_with_sh_and_writes_both_lists(digits_dir, tmp_path):
    image = next((digits_dir / "train" / "0").iterdir())
    for synset in ("n01443537", "n01440764"):
        _tar(tmp_path / f"{synset}.tar", {f"{synset}_1.JPEG": image, f"{synset}_2.JPEG": image})
    _tar(tmp_path / "ILSVRC2012_img_train.tar", {f"{s}.tar": tmp_path / f"{s}.tar" for s in ("n01443537", "n01440764")})
    _tar(tmp_path / "ILSVRC2012_img_val.tar", {f"ILSVRC2012_val_0000000{i}.JPEG": image for i in (1, 2)})
    target = tmp_path / "ILSVRC2012"
    target.mkdir()
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        shutil.move(tmp_path / name, target / name)
    proc = subprocess.run(["sh", str(DOWNLOAD_SCRIPT)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ILSVRC2012_DIR": str(target)})
    assert proc.returncode == 0, proc.stderr
    assert (target / "train_list.txt").read_text().splitlines() == [
        "train/n01440764/n01440764_1.JPEG 0", "train/n01440764/n01440764_2.JPEG 0",
        "train/n01443537/n01443537_1.JPEG 1", "train/n01443537/n01443537_2.JPEG 1"]
    val = (target / "val_list.txt").read_text().splitlines()
    # the first two validation images are a sea snake (class 65) and an alp (class 970)
    assert len(val) == 50000 and val[:2] == ["val/ILSVRC2012_val_00000001.JPEG 65",
                                             "val/ILSVRC2012_val_00000002.JPEG 970"]
    assert "val/ holds 2 of the 50000 validation images" in proc.stderr
    nothing = tmp_path / "empty"
    nothing.mkdir()
    refused = subprocess.run(["sh", str(DOWNLOAD_SCRIPT)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "ILSVRC2012_DIR": str(nothing), "IMAGENET_URL": ""})
    assert refused.returncode == 2 and "pass the download address" in refused.stderr


@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason="../shared/data/imagenette is absent")
def test_shipped_validation_labels_agree_with_imagenette_synset_folders():
    """Imagenette's validation images keep their ILSVRC2012_val_<N> names inside synset folders: an
    independent record of those images' labels (ImageNet-1k indices in val_list_in1k.txt)."""
    labels = VAL_LABELS.read_text().split()
    checked = 0
    for line in (IMAGENETTE / "val_list_in1k.txt").read_text().splitlines():
        path, label = line.rsplit(maxsplit=1)
        match = re.search(r"ILSVRC2012_val_(\d{8})", path)
        if match:
            assert labels[int(match.group(1)) - 1] == label, path
            checked += 1
    assert checked > 100


# ---------------------------------------------------------------- classic Fluid weights (items 2 and 3)


def paddle2_python():
    """A Python with Paddle 2.x (static graph and paddle.static.save_vars): this one under the smoke run, else
    $PADDLE26_PYTHON or CI's ${TMPDIR:-/tmp}/paddle26-venv."""
    if paddle.__version__.startswith("2."):
        return sys.executable
    candidates = [os.environ.get("PADDLE26_PYTHON"),
                  os.path.join(os.environ.get("TMPDIR", "/tmp"), "paddle26-venv", "bin", "python")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


needs_paddle2 = pytest.mark.skipif(paddle2_python() is None, reason="no Paddle 2.x Python to write classic Fluid "
                                   "files (CI's paddle26-venv from requirements-paddle26.txt, or PADDLE26_PYTHON)")
FLUID_CLASSES = 10
# SE_ResNeXt50_32x4d: the classic network scales its classifier's input by 0.5 at inference (dropout), ours not
FLUID_MODELS = ("ResNet50_vd", "MobileNetV1", "ResNet18", "ResNeXt50_32x4d", "ResNeXt50_vd_32x4d", "MobileNetV2",
                "SE_ResNeXt50_32x4d")
EXPORTED_MODELS = ("ResNet50_vd", "MobileNetV1")  # also written as the classic inference export (predict.py)


class ClassicNets(dict):
    """model -> (per-parameter directory, the classic network's logits on the input, input), each written on
    first use by tests/classic_fluid_nets.py under Paddle 2.x, so a test pays only for the networks it uses."""

    def __init__(self, root):
        super().__init__()
        self.root = root
        self.image = np.random.default_rng(1).normal(0, 1, (2, 3, 64, 64)).astype("float32")
        np.save(root / "x.npy", self.image)

    def __missing__(self, model):
        root = self.root
        export = ["--export_dir", str(root / f"{model}_export")] if model in EXPORTED_MODELS else []
        subprocess.run([paddle2_python(), str(ROOT / "tests" / "classic_fluid_nets.py"), "--model", model,
                        "--class_dim", str(FLUID_CLASSES), "--input", str(root / "x.npy"),
                        "--out_dir", str(root / model), "--logits", str(root / f"{model}.npy"), *export],
                       check=True, capture_output=True, timeout=300, cwd=root)
        self[model] = (root / model, np.load(root / f"{model}.npy"), self.image)
        return self[model]


@pytest.fixture(scope="module")
def classic_weights(tmp_path_factory):
    return ClassicNets(tmp_path_factory.mktemp("fluid"))


def classic_export_dir(classic_weights, model):
    """The classic inference export (model + params) of the same network, written beside its weights."""
    assert model in EXPORTED_MODELS, f"add {model} to EXPORTED_MODELS"
    return classic_weights[model][0].parent / f"{model}_export"


def assert_converted_weights_give_classic_logits(classic_weights, model, tmp_path):
    """``python -m utils.fluid_weights`` converts the classic directory; our network on it gives its logits."""
    from models import build_model

    directory, expected, image = classic_weights[model]
    converted = tmp_path / f"{model}.pdparams"
    out = run_script("-m", "utils.fluid_weights", f"--model={model}", f"--fluid_dir={directory}",
                     f"--output={converted}")
    assert f"({FLUID_CLASSES} classes)" in out.stdout
    net = build_model(model, class_dim=FLUID_CLASSES)
    net.set_state_dict(paddle.load(str(converted)))
    net.eval()
    got = net(paddle.to_tensor(image)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.smoke
@needs_paddle2
@pytest.mark.parametrize("model", FLUID_MODELS)
def test_converted_classic_weights_give_the_classic_networks_logits(classic_weights, model, tmp_path):
    assert_converted_weights_give_classic_logits(classic_weights, model, tmp_path)


@needs_paddle2
def test_se_resnext152_is_the_classic_networks_three_conv_stem_and_64_groups(classic_weights, tmp_path):
    """se_resnext.py builds its 152-layer net unlike its 50/101 (3x3 stem conv1..conv3, 64 groups, blocks
    numbered from 4): this zoo's SE_ResNeXt152_32x4d takes those weights and computes the same logits.
    (Not in the Paddle 2.6 smoke run: building the 152-layer classic net takes ~7 s.)"""
    assert_converted_weights_give_classic_logits(classic_weights, "SE_ResNeXt152_32x4d", tmp_path)


@pytest.mark.smoke
@needs_paddle2
@pytest.mark.parametrize("model", ("ResNet50_vd", "MobileNetV1"))
def test_infer_takes_a_classic_weights_directory_like_its_pdparams(classic_weights, digits_dir, model, tmp_path):
    directory = classic_weights[model][0]
    converted = tmp_path / f"{model}.pdparams"
    run_script("-m", "utils.fluid_weights", f"--model={model}", f"--fluid_dir={directory}", f"--output={converted}")
    results = []
    for weights in (directory, converted):
        out = run_script("infer.py", f"--model={model}", f"--pretrained_model={weights}", "--image_shape", "3", "64",
                         "64", "--resize_short_size=64", f"--data_dir={digits_dir / 'val' / '3'}", "--topk=5",
                         "--engine=dygraph", "--reader_thread=0")
        results.append(out.stdout)
    assert_same_predictions(*results)


@needs_paddle2
def test_finetune_exclude_takes_classic_names_and_refuses_names_matching_nothing(classic_weights, digits_dir,
                                                                                 tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "train.txt", 16)
    subset_list(digits_dir / "val_list.txt", tmp_path / "val.txt", 8)
    common = ["train.py", "--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32",
              f"--data_dir={digits_dir}", f"--train_list={tmp_path / 'train.txt'}",
              f"--val_list={tmp_path / 'val.txt'}", "--batch_size=8", "--num_epochs=1", "--max_iter=1",
              "--validate=False", "--reader_thread=0", f"--pretrained_model={classic_weights['ResNet18'][0]}"]
    out = run_script(*common, "--finetune_exclude_pretrained_params=fc_0.w_0,fc_0.b_0",
                     f"--model_save_dir={tmp_path / 'a'}")
    assert "loaded 105 tensors" in out.stdout and "excluded by flag: fc.weight, fc.bias" in out.stdout
    wrong = run_script(*common, "--finetune_exclude_pretrained_params=fc_0.w_0,fc_1",
                       f"--model_save_dir={tmp_path / 'b'}", check=False)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "error: --finetune_exclude_pretrained_params fc_1: matches no parameter of ResNet18" in wrong.stderr


# ---------------------------------------------------------------- predict.py's classic form (item 1)


def assert_same_predictions(stdout_a: str, stdout_b: str) -> None:
    """The same images, the same top-k ids, scores within 1e-4 (two engines, two weight routes)."""
    a, b = json.loads(stdout_a), json.loads(stdout_b)
    assert [(r["path"], r["class_ids"]) for r in a] == [(r["path"], r["class_ids"]) for r in b] and len(a) > 5
    np.testing.assert_allclose([r["scores"] for r in a], [r["scores"] for r in b], atol=1e-4)


@pytest.mark.smoke
@needs_paddle2
@pytest.mark.parametrize("model", ("ResNet50_vd", "MobileNetV1"))
def test_predict_classic_form_runs_a_classic_export_like_infer_on_its_weights(classic_weights, digits_dir, model):
    export = classic_export_dir(classic_weights, model)
    images = digits_dir / "val" / "5"
    size = ["--image_shape", "3", "64", "64"]
    classic = run_script("predict.py", f"--model_file={export / 'model'}", f"--params_file={export / 'params'}",
                         f"--data_dir={images}", "--gpu_id=0", "--gpu_mem=1024", f"--model={model}", *size,
                         "--topk=5")
    ours = run_script("infer.py", f"--model={model}", f"--pretrained_model={classic_weights[model][0]}", *size,
                      f"--data_dir={images}", "--topk=5", "--engine=dygraph", "--reader_thread=0")
    assert_same_predictions(classic.stdout, ours.stdout)
    single = run_script("predict.py", f"--model_file={export / 'model'}", f"--params_file={export / 'params'}",
                        f"--image_path={next(images.iterdir())}", "--gpu_id=0", "--gpu_mem=1024", f"--model={model}",
                        *size)
    assert len(json.loads(single.stdout)) == 1 and "classes" in single.stderr


@pytest.mark.smoke
def test_predict_classic_form_runs_this_suites_export(digits_dir, tmp_path):
    from models import build_model

    paddle.seed(0)
    paddle.save(build_model("MobileNetV1", class_dim=10).state_dict(), str(tmp_path / "w.pdparams"))
    run_script("infer.py", "--model=MobileNetV1", f"--pretrained_model={tmp_path / 'w.pdparams'}", "--image_shape",
               "3", "64", "64", "--save_inference=True", f"--model_save_dir={tmp_path}")
    export = tmp_path / "MobileNetV1"
    program = next(p for p in (export / "inference.json", export / "inference.pdmodel") if p.is_file())
    images = digits_dir / "val" / "2"
    by_dir = run_script("predict.py", f"--inference_model={export}", f"--data_dir={images}", "--topk=5",
                        "--engine=inference")
    classic = run_script("predict.py", f"--model_file={program}", f"--params_file={export / 'inference.pdiparams'}",
                         f"--data_dir={images}", "--topk=5", "--gpu_id=0", "--gpu_mem=1024")
    assert_same_predictions(classic.stdout, by_dir.stdout)
    assert "the export's preprocessing" in classic.stderr
    neither = run_script("predict.py", f"--data_dir={images}", check=False)
    assert neither.returncode == 2 and "give --inference_model DIR" in neither.stderr
