"""The training loop behind train.py: data, model, schedule, logging, validation, checkpoints, resume.

Reproducibility: every random draw (sample order, crops, mixup, dropout) is seeded from
(--random_seed, epoch), so a run resumed from the checkpoint of epoch k continues exactly as the
uninterrupted run would.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import time
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as dist

from models.base import main_logits
from reader import (
    BadImageLog,
    EpochBatchSampler,
    ImageListDataset,
    ListSummary,
    make_loader,
    parse_list_file,
    resolve_list,
)
from utils.amp import AmpSettings, restore_scaler, scaler_state
from utils.args import UsageError
from utils.checkpoint import latest_checkpoint, load_checkpoint, load_pretrained, save_checkpoint
from utils.cli import select_device
from utils.ema import ModelEMA
from utils.evaluate import all_reduce_counts, evaluate
from utils.losses import ClassificationLoss, MixupBatch
from utils.lr import ScheduleSpec, build_scheduler
from utils.metrics import Accumulator, Throughput, format_seconds, topk_correct
from utils.optimizer import build_optimizer
from utils.presets import build_model_from_args, preprocess_config


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the message names the step and the last good checkpoint."""


@dataclass
class RankInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _log(rank: RankInfo, message: str) -> None:
    if rank.is_main:
        print(message, flush=True)


def resolve_seed(args: argparse.Namespace) -> int:
    if args.enable_ce:
        return 1000 if args.random_seed is None else args.random_seed
    if args.random_seed is not None:
        return args.random_seed
    return int.from_bytes(os.urandom(4), "little") % (2**31)


class Trainer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = select_device(args.use_gpu)
        self.rank = self._init_distributed()
        self.seed = resolve_seed(args)
        self.start_epoch = 0
        self.start_step = 0  # within start_epoch, when resuming a checkpoint saved mid-epoch
        self.global_step = 0
        self.last_checkpoint: str | None = None
        self.stop_requested: str | None = None
        self.halt = False  # max_iter reached or a stop signal: save and leave after this step
        self.bad_log = BadImageLog(log=lambda m: _log(self.rank, m))
        self._load_lists()
        self._build_model()
        self._build_data()
        self._build_solver()
        self._restore()

    # ------------------------------------------------------------ setup

    def _init_distributed(self) -> RankInfo:
        world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
        if world > 1:
            dist.init_parallel_env()
            return RankInfo(dist.get_rank(), dist.get_world_size())
        return RankInfo()

    def _load_lists(self) -> None:
        args = self.args
        self.train_list = resolve_list(args.data_dir, args.train_list, "train_list.txt")
        train = parse_list_file(self.train_list, args.data_dir, args.class_dim)
        val: ListSummary | None = None
        if args.validate:
            self.val_list = resolve_list(args.data_dir, args.val_list, "val_list.txt")
            val = parse_list_file(self.val_list, args.data_dir, args.class_dim)
        self.class_dim = args.class_dim or max(train.num_classes, val.num_classes if val else 0)
        self.train_samples, self.val_samples = train.samples, (val.samples if val else [])
        if train.duplicates:
            _log(self.rank, f"note: {self.train_list} has {train.duplicates} duplicate lines (kept)")
        self.total_images = args.total_images or len(train.samples)

    def _build_model(self) -> None:
        args = self.args
        paddle.seed(self.seed)
        self.model = build_model_from_args(args, self.class_dim)
        if args.pretrained_model:
            exclude = (args.finetune_exclude_pretrained_params or "").split(",")
            report = load_pretrained(self.model, args.pretrained_model, exclude, args.model)
            _log(self.rank, f"pretrained {args.pretrained_model}: {report.summary()}")

    def _build_data(self) -> None:
        args, rank = self.args, self.rank
        if args.batch_size % rank.world_size:
            raise UsageError(f"--batch_size {args.batch_size} is not divisible by the {rank.world_size} "
                             "processes; use a multiple of the number of devices")
        self.batch_per_rank = args.batch_size // rank.world_size
        if self.batch_per_rank < 1:
            raise UsageError(f"--batch_size {args.batch_size} is smaller than the number of devices")
        train_cfg = preprocess_config(args, training=True)
        self.eval_cfg = preprocess_config(args, training=False)
        self.train_set = ImageListDataset(self.train_samples, train_cfg, training=True, seed=self.seed)
        drop_last = len(self.train_samples) // rank.world_size >= self.batch_per_rank
        self.train_sampler = EpochBatchSampler(len(self.train_samples), self.batch_per_rank, shuffle=True,
                                               seed=self.seed, drop_last=drop_last, rank=rank.rank,
                                               world_size=rank.world_size)
        self.val_set = ImageListDataset(self.val_samples, self.eval_cfg, training=False)
        test_batch = max(1, args.test_batch_size // rank.world_size)
        self.val_sampler = EpochBatchSampler(len(self.val_samples), test_batch, shuffle=False,
                                             rank=rank.rank, world_size=rank.world_size)

    def _build_solver(self) -> None:
        args = self.args
        if args.total_images:
            steps = math.ceil(args.total_images / args.batch_size)
        else:
            steps = len(self.train_sampler)
        self.steps_per_epoch = max(1, steps)
        spec = ScheduleSpec(args.lr, self.steps_per_epoch, args.num_epochs, args.warm_up_epochs,
                            tuple(args.step_epochs), args.decay_epochs, args.decay_rate)
        self.scheduler = build_scheduler(args.lr_strategy, spec)
        self.optimizer = build_optimizer(args.optimizer, self.model.parameters(), self.scheduler,
                                         args.l2_decay, args.momentum_rate)
        self.loss_fn = ClassificationLoss(args.label_smoothing_epsilon if args.use_label_smoothing else 0.0)
        self.ema = ModelEMA(self.model, args.ema_decay) if args.use_ema else None
        self.amp = AmpSettings.from_args(args, self.device)
        if self.amp.note():
            _log(self.rank, self.amp.note())
        self.scaler = self.amp.make_scaler()
        self.model, self.optimizer = self.amp.decorate(self.model, self.optimizer)
        if self.rank.world_size > 1:
            self.net = paddle.DataParallel(self.model)
        else:
            self.net = self.model
        self.model_dir = os.path.join(args.model_save_dir, args.model)

    def _restore(self) -> None:
        args = self.args
        directory = args.checkpoint
        if args.resume == "auto" and not directory:
            directory = latest_checkpoint(self.model_dir)
            if directory is None:
                _log(self.rank, f"--resume auto: no complete checkpoint in {self.model_dir}; starting fresh")
        elif args.resume not in (None, "auto"):
            raise UsageError(f"--resume {args.resume!r}: only 'auto' is accepted (or use --checkpoint DIR)")
        if not directory:
            return
        meta = load_checkpoint(directory, self.model, self.optimizer, self.ema, args.model)
        restore_scaler(self.scaler, meta.get("scaler"))
        self.start_epoch = int(meta.get("next_epoch", int(meta["epoch"]) + 1))
        self.start_step = int(meta.get("next_step", 0))
        self.global_step = int(meta.get("global_step", self.start_epoch * self.steps_per_epoch))
        if args.random_seed is None and not args.enable_ce and "seed" in meta:
            self.seed = int(meta["seed"])
            self.train_set.seed = self.train_sampler.seed = self.seed
        self.last_checkpoint = directory
        # every rank says it: all must resume from the same checkpoint
        who = f"rank {self.rank.rank}: " if self.rank.world_size > 1 else ""
        print(f"{who}resumed from {directory}: continuing at epoch {self.start_epoch} step {self.start_step}",
              flush=True)

    # ------------------------------------------------------------ loop

    def fit(self) -> dict:
        args = self.args
        _log(self.rank, f"model {args.model}: {self.class_dim} classes, {len(self.train_samples)} train / "
             f"{len(self.val_samples)} val images, {self.steps_per_epoch} steps/epoch, seed {self.seed}, "
             f"device {self.device}, {self.rank.world_size} process(es)")
        writer = self._visualdl()
        previous = self._install_signal_handlers()
        result = {}
        try:
            for epoch in range(self.start_epoch, args.num_epochs):
                first_step = self.start_step if epoch == self.start_epoch else 0
                done_steps = self._train_epoch(epoch, first_step, writer)
                if done_steps < len(self.train_sampler):  # stopped early: save where we are
                    self._save(epoch, next_epoch=epoch, next_step=done_steps)
                    break
                result = self._end_epoch(epoch, writer)
                if self.halt:
                    break
        finally:
            self._restore_signal_handlers(previous)
            if writer is not None:
                writer.close()
        if self.bad_log.count:
            _log(self.rank, f"skipped {self.bad_log.count} unreadable training images in all")
        return result

    def _batches(self, epoch: int, first_step: int):
        self.train_sampler.set_epoch(epoch, first_step)
        self.train_set.epoch = epoch
        loader = make_loader(self.train_set, self.train_sampler, self.args.reader_thread, self.args.reader_buf_size,
                             self.args.use_dali)
        if not self.args.same_feed:
            yield from loader
            return
        cached = []
        for batch in loader:
            cached.append(batch)
            if len(cached) == self.args.same_feed:
                break
        for step in range(first_step, len(self.train_sampler)):
            yield cached[step % len(cached)]

    def _train_epoch(self, epoch: int, first_step: int, writer) -> int:
        """Train one epoch from ``first_step``; returns the number of steps done (fewer when stopped early)."""
        args = self.args
        self.net.train()
        if args.freeze_bn:
            for layer in self.model.sublayers():
                if isinstance(layer, (paddle.nn.layer.norm._BatchNormBase, paddle.nn.BatchNorm)):
                    layer.eval()
        speed, steps_in_epoch = Throughput(), len(self.train_sampler)
        epoch_start = time.perf_counter()
        profiler = self._profiler(epoch)
        step = first_step - 1
        for step, (images, labels, _indices, bad) in enumerate(self._batches(epoch, first_step), start=first_step):
            self.bad_log.add(bad)
            if len(labels) == 0:
                continue
            # per-step seeds: dropout, drop-connect and mixup repeat exactly after a resume
            paddle.seed(self.seed * 100_003 + self.global_step)
            mixup = MixupBatch(args.mixup_alpha, np.random.default_rng([self.seed, epoch, step])) \
                if args.use_mixup else None
            loss, logits, labels_np = self._train_step(images, labels, mixup)
            self.global_step += 1
            speed.add(len(labels_np) * self.rank.world_size)
            if profiler is not None:
                profiler.step()
            if step % args.print_step == 0 or step == steps_in_epoch - 1:
                self._log_step(epoch, step, steps_in_epoch, loss, logits, labels_np, speed, epoch_start, writer)
            if args.max_iter and self.global_step >= args.max_iter:
                _log(self.rank, f"--max_iter {args.max_iter} reached")
                self.halt = True
                return step + 1
            if self.stop_requested:
                _log(self.rank, f"{self.stop_requested}: saving a checkpoint before exiting")
                self.halt = True
                return step + 1
        if profiler is not None:
            profiler.stop()
            profiler.summary()
        return steps_in_epoch

    def _train_step(self, images, labels, mixup):
        x = images if isinstance(images, paddle.Tensor) else paddle.to_tensor(images)
        y = labels if isinstance(labels, paddle.Tensor) else paddle.to_tensor(labels)
        y_b, lam = None, 1.0
        if mixup is not None:
            x, y, y_b, lam = mixup(x, y)
        with self.amp.autocast():
            output = self.net(x)
            loss = self.loss_fn(output, y, y_b, lam)
        loss_value = self._global_mean(loss)
        self.step_lr = self.optimizer.get_lr()  # the lr this step uses (logged), before the schedule moves
        if not math.isfinite(loss_value):
            where = self.last_checkpoint or "none yet"
            raise TrainingDiverged(f"loss is {loss_value} at step {self.global_step + 1}; "
                                   f"last good checkpoint: {where}. Lower --lr or check the data.")
        if self.scaler.is_enable():
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)  # skips the step when gradients overflowed
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss_value, main_logits(output).numpy(), y.numpy()

    def _global_mean(self, loss: paddle.Tensor) -> float:
        """The loss over the global batch (all ranks), so every rank logs and NaN-checks the same value."""
        if self.rank.world_size == 1:
            return float(loss)
        total = loss.detach().clone()
        dist.all_reduce(total)
        return float(total) / self.rank.world_size

    def _log_step(self, epoch, step, steps, loss, logits, labels, speed, epoch_start, writer) -> None:
        hits = topk_correct(logits, labels)
        rate = speed.rate()
        remaining_steps = (steps - step - 1) + (self.args.num_epochs - epoch - 1) * steps
        elapsed_per_step = (time.perf_counter() - epoch_start) / (step + 1)
        lr = self.step_lr
        _log(self.rank, f"[train] epoch {epoch} step {step}/{steps} loss {loss:.5f} "
             f"top1 {hits[1] / len(labels):.4f} top5 {hits[5] / len(labels):.4f} lr {lr:.6f} "
             f"{rate:.1f} img/s ETA {format_seconds(remaining_steps * elapsed_per_step)}")
        if writer is not None:
            writer.add_scalar("train/loss", loss, self.global_step)
            writer.add_scalar("train/lr", lr, self.global_step)
            writer.add_scalar("train/top1", hits[1] / len(labels), self.global_step)

    def validate(self, use_ema: bool = False) -> tuple[Accumulator, int]:
        loader = make_loader(self.val_set, self.val_sampler, self.args.reader_thread, self.args.reader_buf_size,
                             self.args.use_dali)
        live = self.ema.swap_into(self.model) if use_ema else None
        try:
            bad = BadImageLog(log=lambda m: _log(self.rank, m), seen=self.bad_log.messages)
            accuracy = evaluate(self.model, loader, bad, show_progress=self.rank.is_main)
        finally:
            if live is not None:
                self.model.set_state_dict(live)
        return all_reduce_counts(accuracy, bad.count)

    def _end_epoch(self, epoch: int, writer) -> dict:
        args, result = self.args, {"epoch": epoch}
        if args.validate and self.val_samples:
            for tag, use_ema in (("", False), ("ema_", True)) if self.ema else (("", False),):
                accuracy, bad = self.validate(use_ema)
                result.update({f"{tag}top1": accuracy.top(1), f"{tag}top5": accuracy.top(5),
                               f"{tag}samples": accuracy.samples})
                _log(self.rank, f"[val] epoch {epoch} {tag or ''}top1 {accuracy.top(1):.4f} "
                     f"top5 {accuracy.top(5):.4f} samples {accuracy.samples} skipped {bad}")
                if writer is not None:
                    writer.add_scalar(f"val/{tag}top1", accuracy.top(1), epoch)
        last = epoch == args.num_epochs - 1
        if (epoch + 1) % args.save_step == 0 or last or self.halt:
            self._save(epoch, next_epoch=epoch + 1, next_step=0)
        return result

    def _save(self, epoch: int, next_epoch: int, next_step: int) -> None:
        """Epoch checkpoints go to <model>/<epoch>; a mid-epoch stop to <model>/<epoch>_step<k>."""
        if not self.rank.is_main:
            return
        name = str(epoch) if next_step == 0 else f"{epoch}_step{next_step}"
        directory = os.path.join(self.model_dir, name)
        meta = {"model": self.args.model, "class_dim": self.class_dim, "seed": self.seed,
                "next_epoch": next_epoch, "next_step": next_step,
                "global_step": self.global_step, "args": vars(self.args),
                "preprocess": self.eval_cfg.__dict__}
        try:
            save_checkpoint(directory, epoch=epoch, model=self.model, optimizer=self.optimizer, ema=self.ema,
                            scaler_state=scaler_state(self.scaler), extra_meta=meta)
        except OSError as err:
            raise UsageError(f"saving checkpoint {directory} failed ({err.strerror or err}); the previous "
                             f"checkpoint {self.last_checkpoint or '(none)'} is intact") from err
        self.last_checkpoint = directory
        _log(self.rank, f"saved checkpoint {directory}")

    # ------------------------------------------------------------ extras

    def _visualdl(self):
        if not self.args.vdl_log_dir or not self.rank.is_main:
            return None
        try:
            from visualdl import LogWriter
        except ImportError as err:
            raise UsageError("--vdl_log_dir needs VisualDL: pip install visualdl") from err
        return LogWriter(logdir=self.args.vdl_log_dir)

    def _profiler(self, epoch: int):
        if not self.args.is_profiler or epoch != self.start_epoch:
            return None
        import paddle.profiler as profiler

        os.makedirs(self.args.profiler_path, exist_ok=True)
        prof = profiler.Profiler(scheduler=(2, 7), on_trace_ready=profiler.export_chrome_tracing(
            self.args.profiler_path))
        prof.start()
        return prof

    def _install_signal_handlers(self):
        def request_stop(signum, _frame):
            self.stop_requested = signal.Signals(signum).name

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread
                pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
