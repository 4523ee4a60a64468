"""scripts/train/*.sh scale with the run's devices (global batch, linear-scaled lr), export the classic cuDNN
flags on GPU runs only, and carry the classic ResNet50_fp16 and _vd (mixup) recipes. Each script runs through
run.sh as a user would, with a stub PYTHON that prints what it was asked to run instead of training."""
import os
import stat
import subprocess

import pytest

import models
from tests.conftest import ROOT

CUDNN_FLAGS = ("FLAGS_cudnn_exhaustive_search", "FLAGS_conv_workspace_size_limit",
               "FLAGS_cudnn_batchnorm_spatial_persistent")
STUB = "\n".join([
    "#!/usr/bin/env bash",
    'echo "cwd=$PWD"',
    f'for name in {" ".join(CUDNN_FLAGS)}; do echo "env:$name=${{!name-unset}}"; done',
    "printf 'arg:%s\\n' \"$@\"",
    ""])


@pytest.fixture
def stub_python(tmp_path):
    path = tmp_path / "python_stub"
    path.write_text(STUB)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run_recipe(name, stub, cwd, check=True, **env_vars):
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "NPROC", "NNODES", "MASTER", "BATCH_PER_DEVICE", *CUDNN_FLAGS)}
    env.update(PYTHON=str(stub), **env_vars)
    proc = subprocess.run(["bash", str(ROOT / "run.sh"), "train", name], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def launched(proc):
    """(argv the script ran, cuDNN flags in its environment, its working directory)."""
    lines = proc.stdout.splitlines()
    argv = [line[4:] for line in lines if line.startswith("arg:")]
    flags = dict(line[4:].split("=", 1) for line in lines if line.startswith("env:"))
    cwd = next(line[4:] for line in lines if line.startswith("cwd="))
    return argv, flags, cwd


def flag(argv, name):
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(name + "=")]
    assert values, f"{name} not passed: {argv}"
    return values[-1]


# The classic ResNet50_vd script: global batch 256 at lr 0.1 on 4 V100s, i.e. 64 images per device.
@pytest.mark.parametrize("env_vars, devices, launcher_args", [
    ({"CUDA_VISIBLE_DEVICES": "", "NPROC": "2"}, 2, ["--nproc_per_node", "2"]),
    ({"CUDA_VISIBLE_DEVICES": "", "NPROC": "2", "NNODES": "2", "MASTER": "10.0.0.1:8090"}, 4,
     ["--nnodes", "2", "--master", "10.0.0.1:8090", "--nproc_per_node", "2"]),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3", "NNODES": "2", "MASTER": "10.0.0.1:8090"}, 8,
     ["--nnodes", "2", "--master", "10.0.0.1:8090", "--devices", "0,1,2,3"]),
])
def test_recipe_batch_and_lr_scale_with_the_devices(stub_python, tmp_path, env_vars, devices, launcher_args):
    argv, _, cwd = launched(run_recipe("ResNet50_vd", stub_python, tmp_path, **env_vars))
    joined = " ".join(argv)
    assert " ".join(launcher_args) in joined
    assert int(flag(argv, "--batch_size")) == 64 * devices
    assert float(flag(argv, "--lr")) == pytest.approx(0.1 * 64 * devices / 256)
    assert cwd == str(tmp_path)  # no cd: the caller's relative paths keep their meaning
    assert argv[argv.index("-m") + 1] == "paddle.distributed.launch"


def test_batch_per_device_override_rescales_lr_and_bad_counts_are_one_line_errors(stub_python, tmp_path):
    argv, _, _ = launched(run_recipe("MobileNetV1", stub_python, tmp_path, CUDA_VISIBLE_DEVICES="0,1",
                                     BATCH_PER_DEVICE="100"))
    assert flag(argv, "--batch_size") == "200"
    assert float(flag(argv, "--lr")) == pytest.approx(0.1 * 200 / 256)  # classic MobileNetV1: lr 0.1 at 256
    for name, value in (("NPROC", "two"), ("NNODES", "0"), ("BATCH_PER_DEVICE", "-8")):
        proc = run_recipe("ResNet50", stub_python, tmp_path, check=False, CUDA_VISIBLE_DEVICES="",
                          **{name: value})
        assert proc.returncode == 2 and "arg:" not in proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1
        assert f"error: {name}={value} must be a positive whole number" in proc.stderr


def test_gpu_runs_export_the_classic_cudnn_flags_and_a_users_value_wins(stub_python, tmp_path):
    _, on_gpu, _ = launched(run_recipe("ResNet50", stub_python, tmp_path, CUDA_VISIBLE_DEVICES="0"))
    assert on_gpu == {"FLAGS_cudnn_exhaustive_search": "1", "FLAGS_conv_workspace_size_limit": "4000",
                      "FLAGS_cudnn_batchnorm_spatial_persistent": "1"}
    _, mine, _ = launched(run_recipe("ResNet50", stub_python, tmp_path, CUDA_VISIBLE_DEVICES="0",
                                     FLAGS_cudnn_exhaustive_search="0"))
    assert mine["FLAGS_cudnn_exhaustive_search"] == "0"
    _, on_cpu, _ = launched(run_recipe("ResNet50", stub_python, tmp_path, CUDA_VISIBLE_DEVICES="", NPROC="1"))
    assert set(on_cpu.values()) == {"unset"}


def test_resnet50_fp16_recipe_is_the_classic_amp_recipe_in_this_suites_flags(stub_python, tmp_path):
    from train import build_parser
    from utils.args import parse

    argv, _, _ = launched(run_recipe("ResNet50_fp16", stub_python, tmp_path, CUDA_VISIBLE_DEVICES="0,1"))
    args = parse(build_parser(), argv[argv.index(str(ROOT / "train.py")) + 1:])  # train.py accepts every flag
    assert args.model == "ResNet50" and args.use_amp and not args.use_pure_fp16
    assert args.scale_loss == 128.0 and args.use_dynamic_loss_scaling
    assert args.data_format == "NHWC" and args.use_dali and args.lr_strategy == "piecewise_decay"
    assert args.batch_size == 2 * 256 and args.lr == pytest.approx(0.1 * 512 / 256)


def test_every_vd_recipe_trains_with_mixup(stub_python, tmp_path):
    vd_models = [name for name in models.list_models() if "_vd" in name]
    assert len(vd_models) > 20
    for name in vd_models:
        argv, _, _ = launched(run_recipe(name, stub_python, tmp_path, CUDA_VISIBLE_DEVICES="", NPROC="1"))
        assert flag(argv, "--use_mixup") == "True", name


def test_multi_node_example_scales_to_its_stated_figures(stub_python, tmp_path):
    argv, _, _ = launched(run_recipe("ResNet50_dist", stub_python, tmp_path, MASTER="10.0.0.1:8090",
                                     CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7"))  # NNODES defaults to 4 there
    assert "--nnodes 4" in " ".join(argv)
    assert flag(argv, "--batch_size") == "1024" and float(flag(argv, "--lr")) == pytest.approx(0.4)
    argv, _, _ = launched(run_recipe("ResNet50_dist", stub_python, tmp_path, MASTER="10.0.0.1:8090", NNODES="2",
                                     CUDA_VISIBLE_DEVICES="0,1,2,3"))
    assert flag(argv, "--batch_size") == "256" and float(flag(argv, "--lr")) == pytest.approx(0.1)


@pytest.mark.parametrize("name, model, lr_ref, batch_ref", [
    ("ResNet50_vd_modern", "ResNet50_vd", 0.1, 256), ("MobileNetV3_large_x1_0_modern", "MobileNetV3_large_x1_0",
                                                      0.064, 1024)])
def test_modern_recipes_parse_and_scale_lr_to_the_accumulated_batch(stub_python, tmp_path, name, model, lr_ref,
                                                                    batch_ref):
    from train import build_parser
    from utils.args import parse

    argv, _, _ = launched(run_recipe(name, stub_python, tmp_path, CUDA_VISIBLE_DEVICES="0,1", ACCUM_STEPS="4"))
    args = parse(build_parser(), argv[argv.index(str(ROOT / "train.py")) + 1:])
    per_device = {"ResNet50_vd": 64, "MobileNetV3_large_x1_0": 512}[model]
    assert args.model == model and args.batch_size == 2 * per_device and args.accum_steps == 4
    assert args.lr == pytest.approx(lr_ref * 2 * per_device * 4 / batch_ref)
    if model == "ResNet50_vd":  # PaddleClas ResNet50_vd + CutMix, switching per batch
        assert args.use_mixup and args.cutmix_alpha > 0 and args.use_label_smoothing
        assert args.lr_strategy == "cosine_decay_warmup"
    else:  # timm's RandAugment recipe
        assert args.use_randaugment and args.random_erasing_prob == 0.2 and args.use_ema
        assert args.optimizer == "rmsprop" and args.lr_strategy == "exponential_decay_warmup"
    proc = run_recipe(name, stub_python, tmp_path, check=False, CUDA_VISIBLE_DEVICES="", ACCUM_STEPS="0")
    assert proc.returncode == 2 and "error: ACCUM_STEPS=0 must be a positive whole number" in proc.stderr
