"""scripts/train/<Model>.sh (one per model, classic recipes) and run.sh, run as a user would."""
import os
import subprocess
import sys

import models
from tests.conftest import ROOT, subset_list


def test_every_model_has_an_up_to_date_train_script():
    proc = subprocess.run([sys.executable, "scripts/make_train_scripts.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    scripts = {name[:-3] for name in os.listdir(ROOT / "scripts" / "train") if not name.endswith("_dist.sh")}
    from scripts.make_train_scripts import NAMED_RECIPES  # recipes keyed by script name, e.g. ResNet50_fp16

    assert scripts == set(models.list_models()) | set(NAMED_RECIPES)


def test_recipes_follow_the_classic_families():
    from scripts.make_train_scripts import recipe_for

    assert "--optimizer=rmsprop" in recipe_for("EfficientNetB3")
    assert "--lr_strategy=piecewise_decay" in recipe_for("ResNet50")
    assert "--use_mixup=True" in recipe_for("ResNet50_vd")


def test_run_sh_train_launches_the_recipe_with_overrides(digits_dir, tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "train_list.txt", 32)
    subset_list(digits_dir / "val_list.txt", tmp_path / "val_list.txt", 16)
    for name in ("train", "val"):  # lists relative to the digits folder
        os.symlink(digits_dir / name, tmp_path / name)
    env = {**os.environ, "DATA_DIR": str(tmp_path), "NPROC": "1", "LOG_DIR": str(tmp_path / "log"),
           "MODEL_SAVE_DIR": str(tmp_path / "out")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(["bash", "run.sh", "train", "ResNet18", "--batch_size=16", "--num_epochs=1",
                           "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (tmp_path / "log" / "workerlog.0").read_text()
    assert "lr_strategy : piecewise_decay" in " ".join(log.split())  # the recipe ...
    assert "batch_size : 16" in " ".join(log.split())  # ... with the command line's override
    assert (tmp_path / "out" / "ResNet18" / "0" / "model.pdparams").exists()


def test_run_sh_rejects_unknown_models_and_jobs():
    proc = subprocess.run(["bash", "run.sh", "train", "NoSuchNet"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "no scripts/train/NoSuchNet.sh" in proc.stderr
    proc = subprocess.run(["bash", "run.sh", "fly"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
