"""The user-mistake contract (README "What happens when..."): every mistake stops early with one clear
line, never a silent useless result. Each test runs the script a user runs, on a few 32x32 digits."""
import json
import os
import shutil
import struct
import subprocess

import cv2
import numpy as np
import paddle
import pytest

from tests.conftest import ROOT, run_script

SMALL = ["--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random 10-class weights: ResNet18, the same with one tensor removed, ResNet34, ResNet18 with NaN."""
    import models

    out = tmp_path_factory.mktemp("weights")
    paddle.seed(0)
    resnet18 = models.build_model("ResNet18", class_dim=10).state_dict()
    paddle.save(resnet18, str(out / "r18.pdparams"))
    paddle.save({k: v for k, v in resnet18.items() if k != "blocks.1.conv0.conv.weight"}, str(out / "partial.pdparams"))
    paddle.save(models.build_model("ResNet34", class_dim=10).state_dict(), str(out / "r34.pdparams"))
    broken = dict(resnet18)
    classifier = [k for k in broken if k.startswith("fc.") and k.endswith("weight")][0]
    broken[classifier] = paddle.full(broken[classifier].shape, float("nan"))
    paddle.save(broken, str(out / "nan.pdparams"))
    return out


@pytest.fixture(scope="module")
def val12(digits_dir, tmp_path_factory):
    """12 digits of the validation list (two per class for six classes), paths relative to the digits folder."""
    lines = [line for line in (digits_dir / "val_list.txt").read_text().splitlines() if line.strip()]
    by_class = {}
    for line in lines:
        by_class.setdefault(line.split()[1], []).append(line)
    chosen = [line for label in sorted(by_class)[:6] for line in by_class[label][:2]]
    path = tmp_path_factory.mktemp("lists") / "val12.txt"
    path.write_text("\n".join(chosen) + "\n")
    return path


def eval_script(weights_file, data_dir, val_list, *extra, check=False):
    return run_script("eval.py", "--model=ResNet18", f"--pretrained_model={weights_file}", f"--data_dir={data_dir}",
                      f"--val_list={val_list}", *SMALL, *extra, check=check)


def one_line_error(proc, *fragments):
    """Exit 2, no traceback, and an `error:` line holding every fragment."""
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert any(all(f in line for f in fragments) for line in lines), (fragments, proc.stderr[-2000:])


# ---------------------------------------------------------------- row 1: no useful data is an error


def test_eval_with_the_wrong_data_dir_stops_with_the_likely_cause_and_writes_no_result(weights, digits_dir, tmp_path):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = tmp_path / "result.json"
    proc = eval_script(weights / "r18.pdparams", empty, digits_dir / "val_list.txt", f"--save_json_path={result}")
    one_line_error(proc, "could not be read", f"the list paths are relative to the list's folder {digits_dir}",
                   f"pass --data_dir={digits_dir}")
    assert not result.exists() and "samples 0" not in proc.stdout


def test_eval_of_a_list_with_windows_separators_names_them(weights, digits_dir, val12, tmp_path):
    windows = tmp_path / "windows.txt"
    windows.write_text(val12.read_text().replace("/", "\\"))
    proc = eval_script(weights / "r18.pdparams", digits_dir, windows, "--max_bad_image_fraction=1")
    one_line_error(proc, "no image of the evaluation could be read (12 of 12)", "Windows separators")


def test_eval_stops_when_more_than_the_allowed_fraction_is_unreadable(weights, digits_dir, val12, tmp_path):
    lines = val12.read_text().splitlines()
    mixed = tmp_path / "mixed.txt"  # 12 readable, 13 missing
    mixed.write_text("\n".join(lines + [f"val/missing{i}.png {i % 6}" for i in range(13)]) + "\n")
    proc = eval_script(weights / "r18.pdparams", digits_dir, mixed)
    one_line_error(proc, "more than --max_bad_image_fraction 0.5", "13 of 25 listed files checked do not exist")
    result = tmp_path / "r.json"
    eval_script(weights / "r18.pdparams", digits_dir, mixed, "--max_bad_image_fraction=0.6",
                f"--save_json_path={result}", check=True)
    saved = json.loads(result.read_text())
    assert (saved["samples"], saved["skipped"]) == (12, 13)


def test_infer_and_predict_say_why_no_input_could_be_read(weights, digits_dir, val12, exported, tmp_path):
    listed = tmp_path / "lists" / "inputs.txt"  # paths relative to digits_dir, but a list's paths start at its folder
    listed.parent.mkdir()
    listed.write_text(val12.read_text())
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={weights / 'r18.pdparams'}", *SMALL,
                      f"--data_dir={listed}", "--engine=dygraph", check=False)
    assert proc.returncode == 1 and len(json.loads(proc.stdout)) == 12
    assert "error: no image could be classified: none of the listed files exist under the list's folder" in proc.stderr
    proc = run_script("predict.py", f"--inference_model={exported}", f"--data_dir={listed}", check=False)
    assert proc.returncode == 1
    assert "error: no image could be classified: none of the listed files exist" in proc.stderr


# ---------------------------------------------------------------- row 2: outputs checked before any work


def test_ema_clean_refuses_to_write_into_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "ResNet18" / "3"
    checkpoint.mkdir(parents=True)
    paddle.save({"w": paddle.ones([2])}, str(checkpoint / "ema.pdparams"))
    paddle.save({"w": paddle.zeros([2])}, str(checkpoint / "model.pdparams"))
    for target in (checkpoint, checkpoint / "clean", tmp_path / "ResNet18" / "3" / "."):
        proc = run_script("ema_clean.py", f"--ema_model_dir={checkpoint}", f"--cleaned_model_dir={target}", check=False)
        one_line_error(proc, "--cleaned_model_dir", "is --ema_model_dir or inside it")
    assert float(paddle.load(str(checkpoint / "model.pdparams"))["w"][0]) == 0.0  # the checkpoint is intact
    run_script("ema_clean.py", f"--ema_model_dir={checkpoint}", f"--cleaned_model_dir={tmp_path / 'clean'}")
    assert (tmp_path / "clean" / "model.pdparams").is_file()


def test_unusable_output_paths_are_refused_before_any_work(weights, digits_dir, val12, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    proc = eval_script(weights / "r18.pdparams", digits_dir, val12, f"--save_json_path={a_file / 'r.json'}")
    one_line_error(proc, "--save_json_path", "not a directory")
    assert "[eval]" not in proc.stdout  # refused before evaluating
    proc = eval_script(weights / "r18.pdparams", digits_dir, val12, f"--save_json_path={tmp_path}")
    one_line_error(proc, "--save_json_path", "is a directory")
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={weights / 'r18.pdparams'}", *SMALL,
                      "--save_inference=True", f"--model_save_dir={a_file}", check=False)
    one_line_error(proc, "--model_save_dir", "not a directory")
    assert "weights:" not in proc.stderr  # refused before loading the model


# ---------------------------------------------------------------- row 3: flags validated before any work


def test_out_of_range_flags_each_get_one_line_before_any_work(tmp_path):
    proc = run_script("train.py", "--model=ResNet18", f"--data_dir={tmp_path}", "--batch_size=0",
                      "--test_batch_size=-2", "--num_epochs=0", "--lr=-0.1", "--save_step=0", "--print_step=0",
                      "--reader_thread=-1",
                      "--use_label_smoothing=True", "--label_smoothing_epsilon=1", "--use_mixup=True",
                      "--mixup_alpha=0", "--image_mean", "123.7", "116.3", "103.5", "--max_bad_image_fraction=1.5",
                      f"--checkpoint={tmp_path}", f"--pretrained_model={tmp_path}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    for expected in ("--batch_size 0: must be >= 1", "--test_batch_size -2: must be >= 1",
                     "--num_epochs 0: must be >= 1", "--lr -0.1: must be >= 0", "--save_step 0: must be >= 1",
                     "--print_step 0: must be >= 1", "--reader_thread -1: must be >= 0",
                     "--label_smoothing_epsilon 1.0: must be in [0, 1)",
                     "--mixup_alpha 0.0: must be > 0 with --use_mixup=True",
                     "--image_mean 123.7 116.3 103.5: takes the 0-1 scale",
                     "--max_bad_image_fraction 1.5: must be in [0, 1]",
                     "--checkpoint and --pretrained_model: give one"):
        assert sum(expected in line for line in errors) == 1, (expected, errors)
    assert len(errors) == 12 and "Configuration Arguments" not in proc.stdout


def test_eval_checks_only_its_own_flags(weights, digits_dir, val12):
    proc = eval_script(weights / "r18.pdparams", digits_dir, val12, "--batch_size=0", "--image_std", "58", "57", "57")
    one_line_error(proc, "--batch_size 0: must be >= 1")
    one_line_error(proc, "--image_std 58.0 57.0 57.0: takes the 0-1 scale")


def test_suspicious_label_counts_are_warned_with_file_and_line(weights, digits_dir, val12, tmp_path):
    lines = (digits_dir / "val_list.txt").read_text().splitlines()
    rare = tmp_path / "rare.txt"  # 5 per class for classes 0-8, and class 9 once (line 46)
    chosen = [line for label in range(9) for line in [x for x in lines if x.endswith(f" {label}")][:5]]
    rare.write_text("\n".join(chosen + [next(x for x in lines if x.endswith(" 9"))]) + "\n")
    proc = eval_script(weights / "r18.pdparams", digits_dir, rare, check=True)
    assert f"warning: {rare}:46: label 9 appears only once" in proc.stderr
    one_class = tmp_path / "one_class.txt"
    one_class.write_text("\n".join(line.rsplit(" ", 1)[0] + " 3" for line in val12.read_text().splitlines()) + "\n")
    proc = eval_script(weights / "r18.pdparams", digits_dir, one_class, check=True)
    assert f"warning: {one_class}:1: all 12 samples have label 3" in proc.stderr


# ---------------------------------------------------------------- row 4: weights that do not fit


@pytest.mark.parametrize("script", ["eval.py", "infer.py"])
def test_eval_and_infer_refuse_incomplete_weights_and_name_another_architecture(script, weights, digits_dir,
                                                                                val12):
    def run(name):
        if script == "eval.py":
            return eval_script(weights / name, digits_dir, val12)
        return run_script("infer.py", "--model=ResNet18", f"--pretrained_model={weights / name}", *SMALL,
                          f"--image_path={digits_dir / val12.read_text().split()[0]}", check=False)

    one_line_error(run("partial.pdparams"), "1 of --model ResNet18's tensors are not in the file",
                   "blocks.1.conv0.conv.weight")
    proc = run("r34.pdparams")
    one_line_error(proc, "weights of another architecture than --model ResNet18")
    assert "--class_dim" not in proc.stderr


# ---------------------------------------------------------------- row 5: valid outputs


def strict_json(text):
    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def test_a_non_finite_score_is_an_error_record_not_nan_in_the_json(weights, digits_dir, val12, tmp_path):
    out = tmp_path / "out.json"
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={weights / 'nan.pdparams'}", *SMALL,
                      f"--image_path={digits_dir / val12.read_text().split()[0]}", "--engine=dygraph",
                      f"--save_json_path={out}", check=False)
    records = strict_json(proc.stdout)
    assert proc.returncode == 1 and strict_json(out.read_text()) == records
    assert "not finite" in records[0]["error"]


def test_eval_refuses_to_score_non_finite_outputs(weights, digits_dir, val12, tmp_path):
    result = tmp_path / "r.json"
    proc = eval_script(weights / "nan.pdparams", digits_dir, val12, "--engine=dygraph", f"--save_json_path={result}")
    one_line_error(proc, "the model's output is not finite (NaN/Inf) for 12 of 12 images")
    assert not result.exists()


def test_an_input_below_the_models_minimum_size_is_refused_up_front(digits_dir, val12, tmp_path):
    import models

    paddle.seed(0)
    googlenet = tmp_path / "googlenet.pdparams"
    paddle.save(models.build_model("GoogLeNet", class_dim=10).state_dict(), str(googlenet))
    proc = run_script("infer.py", "--model=GoogLeNet", f"--pretrained_model={googlenet}", *SMALL,
                      f"--image_path={digits_dir / val12.read_text().split()[0]}", check=False)
    one_line_error(proc, "--image_shape 32x32: GoogLeNet needs inputs of at least 45x45")


# ---------------------------------------------------------------- row 6: inputs


def test_bom_and_absolute_paths_inside_data_dir_are_read(weights, digits_dir, val12, tmp_path):
    lines = val12.read_text().splitlines()
    listed = tmp_path / "bom.txt"  # a BOM, then half the paths absolute (inside --data_dir)
    lines = [f"{digits_dir / line}" if n % 2 else line for n, line in enumerate(lines)]
    listed.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    result = tmp_path / "r.json"
    eval_script(weights / "r18.pdparams", digits_dir, listed, f"--save_json_path={result}", check=True)
    saved = json.loads(result.read_text())
    assert (saved["samples"], saved["skipped"]) == (12, 0)


def test_list_bytes_that_are_not_utf8_are_an_error_with_file_and_line(weights, digits_dir, val12, tmp_path):
    lines = val12.read_text().splitlines()
    listed = tmp_path / "latin1.txt"
    listed.write_bytes(("\n".join(lines[:3]) + "\nval/caf\xe9.png 1\n").encode("latin-1"))
    proc = eval_script(weights / "r18.pdparams", digits_dir, listed)
    one_line_error(proc, f"{listed}:4:", "not UTF-8")


def big_tiff(width, height):
    """A TIFF header declaring width x height 8-bit grey pixels (its data missing: only the header matters)."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1),
               (278, 4, height), (279, 4, width * height)]
    body = b"\0" * 16
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, 1, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0)
        for tag, kind, value in entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8 + len(body)) + body + ifd


def test_infer_on_a_folder_takes_gif_refuses_a_tiff_bomb_and_names_what_it_skipped(weights, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "a.png"), image)
    if not cv2.haveImageWriter("x.gif"):
        pytest.skip(f"OpenCV {cv2.__version__} has no GIF codec (4.11 added it)")
    ok, gif = cv2.imencode(".gif", image)
    assert ok
    (folder / "b.gif").write_bytes(gif.tobytes())
    (folder / "c.tif").write_bytes(big_tiff(20000, 20000))  # 400 MP declared
    (folder / "notes.txt").write_text("not an image")
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={weights / 'r18.pdparams'}", *SMALL,
                      f"--data_dir={folder}", "--engine=dygraph")
    records = {os.path.basename(r["path"]): r for r in json.loads(proc.stdout)}
    assert set(records) == {"a.png", "b.gif", "c.tif"}
    assert "class_ids" in records["b.gif"]
    assert "decoder limit of 178956970" in records["c.tif"]["error"]
    assert "skipped 1 files that are not images OpenCV can decode (.txt)" in proc.stderr


# ---------------------------------------------------------------- row 7: messages that misled


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    run_script("infer.py", "--model=ResNet18", f"--pretrained_model={weights / 'r18.pdparams'}", *SMALL,
               "--save_inference=True", f"--model_save_dir={out}")
    return out / "ResNet18"


def test_predict_with_a_truncated_pdiparams_is_one_line(exported, digits_dir, val12, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(exported, damaged)
    params = damaged / "inference.pdiparams"
    params.write_bytes(params.read_bytes()[: params.stat().st_size // 3])
    proc = run_script("predict.py", f"--inference_model={damaged}",
                      f"--image_path={digits_dir / val12.read_text().split()[0]}", check=False)
    one_line_error(proc, f"--inference_model {damaged}: Paddle Inference cannot load inference.pdiparams",
                   "export it again")


def run_sh(*args, cwd=ROOT, env=None):
    return subprocess.run(["bash", str(ROOT / "run.sh"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_run_sh_refuses_paths_as_model_names_and_a_missing_model(tmp_path):
    evil = tmp_path / "evil.sh"
    evil.write_text(f"touch {tmp_path / 'ran'}\n")
    relative = os.path.relpath(evil.with_suffix(""), ROOT / "scripts" / "train")
    proc = run_sh("train", relative)
    assert proc.returncode == 2 and "not a plain name" in proc.stderr and not (tmp_path / "ran").exists()
    for job in ("eval", "infer", "export", "predict"):
        proc = run_sh(job)
        assert proc.returncode == 2 and proc.stderr.startswith("usage: bash run.sh"), (job, proc.stderr)


def test_run_sh_keeps_the_callers_relative_paths(weights, digits_dir, val12, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(weights / "r18.pdparams", work / "w.pdparams")
    os.symlink(digits_dir, work / "digits")
    shutil.copy(val12, work / "val12.txt")
    proc = run_sh("eval", "ResNet18", "--pretrained_model=w.pdparams", "--val_list=val12.txt", *SMALL,
                  "--save_json_path=out/r.json", cwd=work, env={"DATA_DIR": "digits"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((work / "out" / "r.json").read_text())["samples"] == 12


# ---------------------------------------------------------------- row 8: fallbacks are visible


class _Engine:
    """A stand-in engine returning fixed logits per call (the spot-check schedule is what is tested)."""

    def __init__(self, name, outputs):
        self.name, self.outputs, self.calls = name, outputs, 0

    def __call__(self, batch):
        self.calls += 1
        return self.outputs(self.calls, batch)


def test_the_verified_engine_rechecks_later_batches_and_falls_back_visibly(capsys):
    from utils.inference import VerifiedEngine, engine_fallback

    base = np.tile(np.arange(6, dtype=np.float32), (2, 1))
    reference = _Engine("dygraph", lambda n, batch: base)
    # the fast engine agrees on batches 1-3 and disagrees (reversed classes) from batch 4 on
    fast = _Engine("inference", lambda n, batch: base if n < 4 else base[:, ::-1].copy())
    engine = VerifiedEngine(fast, reference, topk=5)
    outputs = [engine(np.zeros((2, 3, 4, 4), np.float32)) for _ in range(6)]
    assert engine_fallback(engine) and "batch 4" in engine_fallback(engine)
    assert all(np.array_equal(out, base) for out in outputs)  # batch 4 on came from the reference
    assert engine.name == "inference then dygraph"
    assert (fast.calls, reference.calls) == (4, 5)  # batches 1, 2, 4 checked, 3 unchecked, 5 and 6 by the reference
    assert "warning: Paddle Inference disagreed with dygraph on batch 4" in capsys.readouterr().err


def test_eval_says_on_stderr_and_in_the_json_when_the_default_engine_falls_back(weights, digits_dir, val12,
                                                                                tmp_path):
    # Today Paddle Inference cannot run the NHWC (channels-last) conversion of a ResNet on CPU; dygraph can.
    # Should that ever work, this test needs another model the default engine cannot run.
    result = tmp_path / "r.json"
    proc = eval_script(weights / "r18.pdparams", digits_dir, val12, "--data_format=NHWC", "--batch_size=4",
                       f"--save_json_path={result}", check=True)
    saved = json.loads(result.read_text())
    assert saved["engine"] == "dygraph" and saved["samples"] == 12
    assert saved["engine_fallback"].startswith("Paddle Inference failed on batch 1")
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: Paddle Inference failed")]
    assert len(warnings) == 1
