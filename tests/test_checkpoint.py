"""Atomic checkpoints, shape-checked pretrained loading and finding the newest complete checkpoint."""
import os

import numpy as np
import paddle
import pytest

from utils.checkpoint import (
    META,
    latest_checkpoint,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
    save_weights,
)
from utils.errors import UsageError


class Tiny(paddle.nn.Layer):
    def __init__(self, classes=10):
        super().__init__()
        self.body = paddle.nn.Linear(4, 8)
        self.fc = paddle.nn.Linear(8, classes)


def test_pretrained_with_other_class_dim_skips_and_names_the_head(tmp_path):
    source = Tiny(1000)
    save_weights(source.state_dict(), str(tmp_path / "w.pdparams"))
    target = Tiny(10)
    report = load_pretrained(target, str(tmp_path / "w"))  # a path prefix without extension
    assert report.shape_mismatch == ["fc.weight", "fc.bias"]
    assert "fc.weight" in report.summary()
    assert np.array_equal(target.body.weight.numpy(), source.body.weight.numpy())


def test_exclude_flag_still_works(tmp_path):
    source = Tiny(10)
    save_weights(source.state_dict(), str(tmp_path / "w.pdparams"))
    target = Tiny(10)
    before = target.fc.weight.numpy().copy()
    report = load_pretrained(target, str(tmp_path / "w.pdparams"), exclude=["fc"])
    assert report.excluded == ["fc.weight", "fc.bias"]
    assert np.array_equal(target.fc.weight.numpy(), before)


def test_missing_and_foreign_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_pretrained(Tiny(), str(tmp_path / "nothing"))
    (tmp_path / "junk.pdparams").write_bytes(b"this is text, not weights")
    with pytest.raises(UsageError, match="not Paddle weights"):
        load_pretrained(Tiny(), str(tmp_path / "junk.pdparams"))
    other = paddle.nn.Linear(3, 3)
    save_weights(other.state_dict(), str(tmp_path / "other.pdparams"))
    with pytest.raises(UsageError, match="different model"):
        load_pretrained(Tiny(), str(tmp_path / "other.pdparams"))


def test_checkpoint_round_trip_and_model_mismatch(tmp_path):
    model = Tiny()
    opt = paddle.optimizer.Momentum(learning_rate=0.1, parameters=model.parameters())
    path = save_checkpoint(str(tmp_path / "M" / "0"), epoch=0, model=model, optimizer=opt,
                           extra_meta={"model": "M", "global_step": 5})
    restored = Tiny()
    meta = load_checkpoint(path, restored, model_name="M")
    assert meta["epoch"] == 0
    assert np.array_equal(restored.fc.weight.numpy(), model.fc.weight.numpy())
    with pytest.raises(UsageError, match="saved from --model=M"):
        load_checkpoint(path, Tiny(), model_name="N")
    with pytest.raises(UsageError, match="do not fit"):
        load_checkpoint(path, Tiny(3), model_name="M")


def test_latest_checkpoint_ignores_half_written_ones(tmp_path):
    model = Tiny()
    root = tmp_path / "M"
    save_checkpoint(str(root / "0"), epoch=0, model=model, extra_meta={"global_step": 10})
    save_checkpoint(str(root / "1"), epoch=1, model=model, extra_meta={"global_step": 20})
    # a crash mid-save leaves a staging dir, or a dir without a complete meta.json
    os.makedirs(root / ".2.tmp-abc")
    os.makedirs(root / "2")
    (root / "2" / META).write_text('{"epoch": 2, "complete": tru')
    assert latest_checkpoint(str(root)) == str(root / "1")
    assert latest_checkpoint(str(tmp_path / "none")) is None


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = Tiny()
    target = tmp_path / "M" / "0"
    save_checkpoint(str(target), epoch=0, model=model, extra_meta={"global_step": 1})

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paddle, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(str(target), epoch=0, model=Tiny(), extra_meta={"global_step": 2})
    monkeypatch.undo()
    assert latest_checkpoint(str(tmp_path / "M")) == str(target)
    assert not [n for n in os.listdir(tmp_path / "M") if n.startswith(".")]  # staging cleaned up


def test_crafted_pickle_that_would_run_a_command_is_refused(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pdparams").write_bytes(pickle.dumps({"fc.weight": Payload()}))
    with pytest.raises(UsageError, match="refused to load"):
        load_pretrained(Tiny(), str(tmp_path / "evil.pdparams"))
    assert not marker.exists()


def test_safe_loader_reads_what_paddle_save_writes(tmp_path):
    from utils.checkpoint import safe_load

    model = Tiny()
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    saved = model.fc.weight.numpy().copy()
    opt = paddle.optimizer.Momentum(learning_rate=0.1, parameters=model.parameters())
    model.fc(model.body(paddle.rand([2, 4]))).mean().backward()
    opt.step()
    paddle.save(opt.state_dict(), str(tmp_path / "w.pdopt"))
    state = safe_load(str(tmp_path / "w.pdparams"))
    assert np.array_equal(state["fc.weight"], saved)
    assert safe_load(str(tmp_path / "w.pdopt"))
