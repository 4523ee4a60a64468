"""Mixed precision: flags, the one-line CPU note, and checkpoints taken under every precision resuming to
the same state. The resume tests build the objects a GPU run holds with Paddle's own code (see
tests/gpu_objects.py): a GradScaler with scaling on, float16/bfloat16 parameters from decorate(level="O2")
with float32 norm layers, a multi-precision optimizer with float32 master weights. The trainer's own
construction, save and restore run through them. Full fp16 training runs are in test_amp_gpu.py (GPU)."""
import argparse
import json
from unittest import mock

import numpy as np
import paddle
import pytest

from tests.conftest import run_script, subset_list
from tests.gpu_objects import create_master_weights, gpu_place_for_amp
from utils.amp import AmpSettings, restore_scaler, scaler_state
from utils.errors import UsageError


def amp_args(**overrides):
    base = dict(use_amp=False, use_pure_fp16=False, amp_dtype="float16", scale_loss=1.0,
                use_dynamic_loss_scaling=True)
    return argparse.Namespace(**{**base, **overrides})


def test_flags_map_to_levels_dtypes_and_scales():
    o1 = AmpSettings.from_args(amp_args(use_amp=True), "gpu")
    assert (o1.enabled, o1.active, o1.level, o1.dtype, o1.init_scale) == (True, True, "O1", "float16", 32768.0)
    o2 = AmpSettings.from_args(amp_args(use_pure_fp16=True, amp_dtype="bfloat16", scale_loss=128.0,
                                        use_dynamic_loss_scaling=False), "gpu")
    assert (o2.level, o2.dtype, o2.init_scale, o2.dynamic) == ("O2", "bfloat16", 128.0, False)
    cpu = AmpSettings.from_args(amp_args(use_amp=True), "cpu")
    assert cpu.enabled and not cpu.active and "training stays fp32" in cpu.note()
    assert AmpSettings.from_args(amp_args(), "cpu").note() is None
    with pytest.raises(UsageError, match="--amp_dtype"):
        AmpSettings.from_args(amp_args(amp_dtype="int8"), "gpu")


def test_use_amp_on_cpu_trains_fp32_notes_once_and_checkpoints_the_scaler(digits_dir, tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 32)
    common = ["--model=ResNet18", f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}",
              "--validate=False", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--batch_size=16",
              "--reader_thread=0", "--random_seed=1", f"--model_save_dir={tmp_path}", "--use_amp=True",
              "--scale_loss=256", "--use_dynamic_loss_scaling=False"]
    out = run_script("train.py", *common, "--num_epochs=1")
    assert out.stdout.count("needs a GPU") == 1
    meta = json.loads((tmp_path / "ResNet18" / "0" / "meta.json").read_text())
    assert "scaler" in meta and meta["args"]["use_amp"] is True
    weights = paddle.load(str(tmp_path / "ResNet18" / "0" / "model.pdparams"))
    assert all(np.asarray(v).dtype == np.float32 for k, v in weights.items() if not k.endswith("@@"))
    resumed = run_script("train.py", *common, "--num_epochs=2", "--resume=auto")
    assert "continuing at epoch 1" in resumed.stdout


# ---------------------------------------------------------------- resume under every precision


def _trainer(digits_dir, tmp_path, *flags):
    """train.py's Trainer as a GPU run would build it: AMP active, Paddle's decorate/GradScaler on a GPU place."""
    from train import build_parser
    from utils.args import parse
    from utils.trainer import Trainer

    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 16)
    args = parse(build_parser(), [
        "--model=ResNet18", f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}", "--validate=False",
        "--image_shape", "3", "32", "32", "--resize_short_size=32", "--batch_size=4", "--reader_thread=0",
        "--random_seed=3", "--use_ema=True", "--ema_decay=0.9", f"--model_save_dir={tmp_path / 'out'}",
        "--print_step=1", "--lr=0.01", *flags])
    real_from_args = AmpSettings.from_args.__func__
    on_gpu = classmethod(lambda cls, a, device: real_from_args(cls, a, "gpu"))
    with gpu_place_for_amp(), mock.patch.object(AmpSettings, "from_args", on_gpu):
        return Trainer(args)


def _array(value):
    tensor = value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)
    return tensor.astype("float32").numpy()


def _assert_same_training_state(saved, resumed):
    from utils.state import live_tensors

    before, after = live_tensors(saved.model), live_tensors(resumed.model)
    assert list(before) == list(after)
    for key in before:
        assert after[key].dtype == before[key].dtype, key  # float16 stays float16, norm layers float32
        np.testing.assert_array_equal(_array(after[key]), _array(before[key]), err_msg=key)
    np.testing.assert_array_equal(resumed.ema.flat.numpy(), saved.ema.flat.numpy())
    assert resumed.ema.flat.dtype == paddle.float32 and resumed.ema.updates == saved.ema.updates
    assert resumed.scaler.state_dict().keys() == saved.scaler.state_dict().keys()
    assert scaler_state(resumed.scaler) == scaler_state(saved.scaler)
    assert resumed.global_step == saved.global_step
    assert resumed.scheduler.last_epoch == saved.scheduler.last_epoch


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_o2_checkpoint_resumes_fp16_parameters_master_weights_ema_and_scaler(digits_dir, tmp_path, dtype):
    saved = _trainer(digits_dir, tmp_path, "--use_pure_fp16=True", f"--amp_dtype={dtype}")
    conv = saved.model.conv1.conv.weight if hasattr(saved.model, "conv1") else saved.model.parameters()[0]
    assert conv.dtype == getattr(paddle, dtype)  # decorate really cast the model
    assert saved.scaler.is_enable() == (dtype == "float16")  # bf16 needs no loss scaling
    create_master_weights(saved.optimizer)
    masters = saved.optimizer._master_weights
    assert masters and all(m.dtype == paddle.float32 for m in masters.values())
    with paddle.no_grad():  # a distinctive state: masters moved, accumulators filled, EMA updated
        for i, master in enumerate(masters.values()):
            master.set_value(master + 0.001 * (i + 1))
        for accumulators in saved.optimizer._accumulators.values():
            for i, acc in enumerate(accumulators.values()):
                acc.set_value(paddle.full(acc.shape, 0.01 * (i + 1), acc.dtype))
    saved.ema.update(saved.model)
    if saved.scaler.is_enable():
        saved.scaler.load_state_dict({"scale": np.array([1024.0], np.float32), "incr_ratio": 2.0,
                                      "decr_ratio": 0.5, "incr_every_n_steps": 1000,
                                      "decr_every_n_nan_or_inf": 2, "incr_count": 7, "decr_count": 1,
                                      "use_dynamic_loss_scaling": True})
    saved.global_step = 3
    saved._save(0, next_epoch=0, next_step=3)
    saved.close()
    directory = tmp_path / "out" / "ResNet18" / "0_step3"
    assert (directory / "model.pdopt").exists()

    resumed = _trainer(digits_dir, tmp_path, "--use_pure_fp16=True", f"--amp_dtype={dtype}",
                       f"--checkpoint={directory}")
    _assert_same_training_state(saved, resumed)
    # master weights come back as float32 tensors, each under its parameter's name in this process, so the
    # momentum of each one is found (names differ here: this process built the model twice)
    def by_key(trainer, table):
        names = {p.name: key for key, p in trainer.model.named_parameters()}
        names.update({f"{name}_fp32_master_0": key for name, key in list(names.items())})  # accumulators of masters
        return {names[param]: value for param, value in table.items()}

    before, after = by_key(saved, masters), by_key(resumed, resumed.optimizer._master_weights)
    assert before.keys() == after.keys()
    for key, master in before.items():
        assert after[key].dtype == paddle.float32
        assert after[key].name.startswith(dict(resumed.model.named_parameters())[key].name)
        np.testing.assert_array_equal(after[key].numpy(), master.numpy())
    create_master_weights(resumed.optimizer)
    for kind, accumulators in saved.optimizer._accumulators.items():
        before, after = by_key(saved, accumulators), by_key(resumed, resumed.optimizer._accumulators[kind])
        assert before.keys() == after.keys()
        for key in before:
            np.testing.assert_array_equal(_array(after[key]), _array(before[key]), err_msg=f"{kind} {key}")
    # validating the EMA puts float32 averages into float16 parameters and back
    live = resumed.ema.swap_into(resumed.model)
    assert conv.dtype == resumed.model.parameters()[0].dtype
    from utils.state import assign_state
    assign_state(resumed.model, live)


def test_o1_fp16_dynamic_loss_scaling_trains_and_resumes_its_scale(digits_dir, tmp_path):
    # A loss scale of 3e38 overflows float32 (the scaled loss is inf): the real GradScaler skips each step
    # and halves the scale (dynamic scaling), so the saved scale and counters differ from their initial values.
    saved = _trainer(digits_dir, tmp_path, "--use_amp=True", "--scale_loss=3e38", "--num_epochs=1",
                     "--max_iter=2")
    assert saved.scaler.is_enable()
    saved.fit()
    state = scaler_state(saved.scaler)
    assert state["scale"] == pytest.approx(3e38 / 4) and state["decr_count"] == 0
    checkpoint = tmp_path / "out" / "ResNet18" / "0_step2"
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["scaler"]["scale"] == pytest.approx(3e38 / 4)  # a number in the JSON, not "[2.5e+29]"
    resumed = _trainer(digits_dir, tmp_path, "--use_amp=True", "--scale_loss=3e38", f"--checkpoint={checkpoint}")
    _assert_same_training_state(saved, resumed)


def test_scaler_state_of_earlier_checkpoints_still_restores():
    with gpu_place_for_amp():
        scaler = paddle.amp.GradScaler(enable=True, init_loss_scaling=8.0)
    restore_scaler(scaler, {"scale": "[32768.]", "incr_ratio": 2.0, "decr_ratio": 0.5, "incr_every_n_steps": 1000,
                            "decr_every_n_nan_or_inf": 1, "incr_count": 4, "decr_count": 0,
                            "use_dynamic_loss_scaling": True})
    assert scaler_state(scaler)["scale"] == 32768.0 and scaler_state(scaler)["incr_count"] == 4


def test_restricted_loader_takes_what_paddle_optimizers_write_and_nothing_that_runs_code(tmp_path):
    import pickle

    from utils.checkpoint import load_state_file
    from utils.errors import UsageError

    model = paddle.nn.Linear(3, 2)
    optimizer = paddle.optimizer.Momentum(learning_rate=0.1, parameters=model.parameters())
    model(paddle.ones([1, 3])).sum().backward()
    optimizer.step()
    paddle.save(optimizer.state_dict(), str(tmp_path / "opt.pdopt"))
    state = load_state_file(str(tmp_path / "opt.pdopt"))
    assert any(isinstance(v, np.ndarray) for v in state.values())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pdopt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(UsageError, match="builtins.print"):
        load_state_file(str(tmp_path / "evil.pdopt"))


def test_o2_validation_feeds_the_reduced_precision_model_under_autocast(digits_dir, tmp_path):
    """Under O2 the parameters are bfloat16/float16 and the loader's batches float32: a plain forward fails
    (the defect of validating outside auto_cast); the trainer's validation runs under the training
    precision, so auto_cast casts the inputs (here to what the CPU has kernels for) and it completes."""
    subset_list(digits_dir / "val_list.txt", tmp_path / "v.txt", 12)
    trainer = _trainer(digits_dir, tmp_path, "--use_pure_fp16=True", "--amp_dtype=bfloat16", "--validate=True",
                       f"--val_list={tmp_path / 'v.txt'}", "--test_batch_size=4")
    trainer.close()
    assert trainer.model.parameters()[0].dtype == paddle.bfloat16
    with pytest.raises(ValueError, match="does not match the type of data"):
        trainer.model(paddle.randn([2, 3, 32, 32]))
    with gpu_place_for_amp():
        accuracy, skipped = trainer.validate()
    assert (accuracy.samples, skipped) == (12, 0)
