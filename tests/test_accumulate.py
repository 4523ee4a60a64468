"""--accum_steps (gradient accumulation), --clip_grad_norm and --use_sync_bn, through train.py's main on the
digits data set. The accumulation runs use SqueezeNet1_1 (no BatchNorm in the zoo's SqueezeNet) with its
dropout set to 0, so K batches of B and one batch of K x B meet the same arithmetic up to fp32 rounding.
The 2-process check (ranks all-reduce once per optimizer step) is in test_distributed.py."""
import numpy as np
import paddle
import pytest

import models
import train as train_script
from tests.conftest import IMAGENETTE, run_script, subset_list
from tests.gpu_objects import gpu_place_for_amp
from train import build_parser
from utils.args import parse  # imported at collection: print_arguments binds this sys.stdout, not a test's

DATA = ["--model=SqueezeNet1_1", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0",
        "--validate=False", "--random_seed=5", "--print_step=1", "--lr=0.05", "--lr_strategy=cosine_decay",
        "--num_epochs=1"]


@pytest.fixture
def no_dropout(monkeypatch):
    """SqueezeNet without dropout: a deterministic BN-free network, so batch splits change nothing."""
    import utils.trainer

    monkeypatch.setattr(utils.trainer, "build_model_from_args",
                        lambda args, class_dim: models.build_model(args.model, class_dim=class_dim, dropout_prob=0.0))


@pytest.fixture
def data(digits_dir, tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "train.txt", 64)
    subset_list(digits_dir / "train_list.txt", tmp_path / "train56.txt", 56)
    subset_list(digits_dir / "train_list.txt", tmp_path / "train24.txt", 24)
    return [f"--data_dir={digits_dir}"]


def train(tmp_path, out, *flags):
    code = train_script.main([*DATA, f"--train_list={tmp_path / 'train.txt'}", f"--model_save_dir={tmp_path / out}",
                              *flags])
    assert code == 0
    return tmp_path / out / "SqueezeNet1_1"


def weights(directory):
    return {k: np.asarray(v) for k, v in paddle.load(str(directory / "model.pdparams")).items()}


def test_two_accumulated_batches_make_the_update_of_one_double_batch(no_dropout, data, tmp_path, capsys):
    accumulated = weights(train(tmp_path, "k2", *data, "--batch_size=8", "--accum_steps=2") / "0")
    assert "4 steps/epoch of 2 batches each" in capsys.readouterr().out  # 64 images: 8 batches, 4 updates
    double = weights(train(tmp_path, "k1", *data, "--batch_size=16") / "0")
    single = weights(train(tmp_path, "b8", *data, "--batch_size=8") / "0")  # 8 updates of 8: another model
    assert accumulated.keys() == double.keys()
    for key in accumulated:
        np.testing.assert_allclose(accumulated[key], double[key], rtol=1e-4, atol=1e-6, err_msg=key)
    moved = max(np.abs(double[k] - single[k]).max() for k in double)
    assert moved > 1e-3  # the comparison above could tell the runs apart
    # an epoch shorter than a group: 3 batches of 8 with --accum_steps 4 step once, each loss divided by 3
    short = [*data, f"--train_list={tmp_path / 'train24.txt'}"]
    partial = weights(train(tmp_path, "k4", *short, "--batch_size=8", "--accum_steps=4") / "0")
    whole = weights(train(tmp_path, "b24", *short, "--batch_size=24") / "0")
    for key in partial:
        np.testing.assert_allclose(partial[key], whole[key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.smoke
def test_stop_mid_group_saves_at_the_group_end_and_resume_with_a_short_last_group_is_exact(
        no_dropout, data, tmp_path, monkeypatch, capsys):
    # 56 images at batch 8: 7 batches, groups of 2, 2, 2 and a last group of 1 (its loss divided by 1)
    flags = [*data, f"--train_list={tmp_path / 'train56.txt'}", "--batch_size=8", "--accum_steps=2",
             "--num_epochs=2", "--use_sync_bn=True"]
    full = train(tmp_path, "full", *flags)
    assert "note: --use_sync_bn has no effect in a CPU run" in capsys.readouterr().out
    from utils.trainer import Trainer

    real = Trainer._accumulate
    calls = []

    def signal_during_the_third_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # batch 2: the first batch of the group [2, 4)
            self.stop_requested = "SIGTERM"
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_accumulate", signal_during_the_third_batch)
        code = train_script.main([*DATA, *flags, f"--model_save_dir={tmp_path / 'part'}"])
    assert code == 143
    part = tmp_path / "part" / "SqueezeNet1_1"
    assert [p.name for p in part.iterdir() if p.is_dir()] == ["0_step4"]  # the group finished, then the stop
    train(tmp_path, "part", *flags, "--resume=auto")
    expected, got = weights(full / "1"), weights(part / "1")
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key


def test_clipping_under_loss_scaling_clips_the_unscaled_accumulated_gradient(data, tmp_path):
    from utils.trainer import Trainer, _AccumulationGroup, _Window

    clip, lr = 0.05, 0.1
    args = parse(build_parser(), [
        "--model=ResNet18", *data, f"--train_list={tmp_path / 'train.txt'}", "--image_shape", "3", "32", "32",
        "--resize_short_size=32", "--reader_thread=0", "--validate=False", "--batch_size=4", "--random_seed=2",
        "--lr_strategy=piecewise_decay", f"--lr={lr}", "--l2_decay=0", f"--clip_grad_norm={clip}",
        "--accum_steps=2", f"--model_save_dir={tmp_path / 'out'}"])
    trainer = Trainer(args)
    with gpu_place_for_amp():  # GradScaler keeps scaling on only where it sees a GPU place
        trainer.scaler = paddle.amp.GradScaler(init_loss_scaling=1024.0)
    assert trainer.scaler.is_enable()
    batches = iter(trainer._batches(0, 0))
    (first, first_labels, _, _), (second, second_labels, _, _) = next(batches), next(batches)
    trainer.close()
    trainer.model.eval()  # BatchNorm on its running statistics: the batch split changes no gradient
    before = {p.name: p.numpy().copy() for p in trainer.model.parameters()}

    # the true gradient of the 8 images, with no scaling and no clipping
    images = paddle.concat([trainer.normalize(first), trainer.normalize(second)])
    labels = paddle.to_tensor(np.concatenate([np.asarray(first_labels), np.asarray(second_labels)]))
    trainer.loss_fn(trainer.model(images), labels).backward()
    grads = {p.name: p.grad.numpy().copy() for p in trainer.model.parameters() if p.grad is not None}
    trainer.optimizer.clear_grad()
    norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    # clipping is active; clipping the 1024x scaled gradient before unscaling would give a 1024x smaller step
    assert norm > clip

    group = _AccumulationGroup(0, 2, 2)
    group.begin(0)
    window = _Window(trainer.rank)
    trainer._accumulate(first, first_labels, None, window, group.size, sync=False)
    trainer._accumulate(second, second_labels, None, window, group.size, sync=True)
    group.trained, group.synced = 2, True
    trainer._finish_group(group, window)
    assert trainer.scaler._scale.numpy().reshape(-1)[0] == 1024.0  # no overflow: the step was taken
    for p in trainer.model.parameters():
        if p.name in grads:  # Momentum's first step: velocity = the clipped gradient
            expected = before[p.name] - lr * grads[p.name] * (clip / norm)
            np.testing.assert_allclose(p.numpy(), expected, rtol=1e-4, atol=1e-7, err_msg=p.name)


def test_sync_bn_converts_on_multi_process_gpu_runs_only():
    from utils.trainer import use_sync_batchnorm

    model = models.build_model("ResNet18", class_dim=10)
    plain = sum(isinstance(layer, paddle.nn.BatchNorm2D) for layer in model.sublayers())
    keys = list(model.state_dict())
    same, note = use_sync_batchnorm(model, "gpu", 1)
    assert same is model and "no effect in a single process" in note
    converted, note = use_sync_batchnorm(model, "gpu", 2)  # the GPU branch, with Paddle's real conversion
    synced = [layer for layer in converted.sublayers() if isinstance(layer, paddle.nn.SyncBatchNorm)]
    assert len(synced) == plain > 0 and f"{plain} BatchNorm layers share statistics over 2 processes" in note
    assert list(converted.state_dict()) == keys  # checkpoints load into the plain model of eval.py


def test_bad_accumulation_and_clip_values_are_one_line_errors(data, tmp_path):
    proc = run_script("train.py", *DATA, *data, "--accum_steps=0", "--clip_grad_norm=-1", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert any(line.startswith("error: --accum_steps 0: must be >= 1") for line in lines), proc.stderr
    assert any(line.startswith("error: --clip_grad_norm -1.0: must be > 0") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not (IMAGENETTE / "train_list.txt").exists(), reason=f"{IMAGENETTE} not present")
def test_every_new_flag_on_real_images_resumed_mid_epoch_matches_the_uninterrupted_run(tmp_path):
    subset_list(IMAGENETTE / "train_list.txt", tmp_path / "train.txt", 40)
    flags = ["--model=ResNet18", f"--data_dir={IMAGENETTE}", f"--train_list={tmp_path / 'train.txt'}",
             "--validate=False", "--image_shape", "3", "64", "64", "--resize_short_size=64", "--reader_thread=0",
             "--random_seed=9", "--print_step=1", "--num_epochs=1", "--batch_size=8", "--lr=0.05",
             "--lr_strategy=cosine_decay_warmup", "--warm_up_epochs=1", "--use_label_smoothing=True",
             "--use_mixup=True", "--cutmix_alpha=1.0", "--mixup_switch_prob=0.5", "--use_randaugment=True",
             "--randaugment_n=2", "--randaugment_m=9", "--random_erasing_prob=0.25", "--use_ema=True",
             "--ema_decay=0.9", "--accum_steps=2", "--clip_grad_norm=1.0", "--use_sync_bn=True"]
    full = run_script("train.py", *flags, f"--model_save_dir={tmp_path / 'full'}")
    # 40 images at batch 8: 5 batches, optimizer steps of 2, 2 and 1 batches, one log line each
    assert "3 steps/epoch of 2 batches each" in full.stdout
    assert [line.split()[4] for line in full.stdout.splitlines() if line.startswith("[train] epoch 0 step")] == \
        ["0/3", "1/3", "2/3"]
    part = tmp_path / "part"
    run_script("train.py", *flags, f"--model_save_dir={part}", "--max_iter=2")  # 2 optimizer steps: 4 batches
    assert (part / "ResNet18" / "0_step4").is_dir()
    resumed = run_script("train.py", *flags, f"--model_save_dir={part}", "--resume=auto")
    assert "continuing at epoch 0 step 4" in resumed.stdout
    for name in ("model.pdparams", "ema.pdparams"):
        expected = weights_file(tmp_path / "full" / "ResNet18" / "0" / name)
        got = weights_file(part / "ResNet18" / "0" / name)
        assert all(np.array_equal(expected[k], got[k]) for k in expected), name


def weights_file(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}
