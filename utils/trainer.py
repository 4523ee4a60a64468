"""The training loop behind train.py: data, model, schedule, logging, validation, checkpoints, resume.

Reproducibility: every random draw (sample order, crops, mixup, dropout) is seeded from
(--random_seed, epoch, step, rank), so a run resumed from a checkpoint continues exactly as the
uninterrupted run would.

Multi-process runs: every rank takes the same steps and enters the same collectives whatever happens on
one rank alone (unreadable images, a stop signal): each step begins with one small agreement over a CPU
group (how many images each rank could read, whether any rank was asked to stop), and all ranks act on
the sums together. Rank 0 chooses the seed and the checkpoint to resume; only rank 0 writes.

Gradient accumulation (--accum_steps K): the loader batches of an epoch form groups of K (the last group
of an epoch may be shorter); each group's losses are divided by the group's batch count, its gradients
summed, and one optimizer step taken at its end. "Step" below (lr schedule, --print_step, --max_iter, EMA,
global_step) means an optimizer step; the sampler and mid-epoch checkpoints count loader batches, and
checkpoints and stops land only at group boundaries, so a resume replays whole groups exactly.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import time

import numpy as np
import paddle

from models.base import main_logits
from models.registry import get_model_meta
from reader import (
    BadImageLog,
    EpochBatchSampler,
    ImageListDataset,
    ListSummary,
    UnreadableDataError,
    allowed_bad_images,
    likely_cause,
    make_loader,
    resolve_split,
)
from utils import distributed, report
from utils.amp import AmpSettings, restore_scaler, scaler_state
from utils.checkpoint import (
    RunLock,
    latest_checkpoint,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
    set_aside_checkpoints,
)
from utils.cli import select_device
from utils.distributed import RankInfo
from utils.ema import ModelEMA
from utils.errors import UsageError
from utils.evaluate import all_reduce_counts, evaluate
from utils.losses import ClassificationLoss, batch_augmentation
from utils.lr import ScheduleSpec, build_scheduler
from utils.metrics import Accumulator, format_seconds
from utils.optimizer import build_optimizer
from utils.outputs import probe_output_dir
from utils.presets import build_model_from_args, preprocess_config
from utils.state import assign_state
from utils.transforms import DeviceNormalizer

# flags whose change does not make a resumed run a different run
RESUME_NEUTRAL_FLAGS = {"resume", "checkpoint", "overwrite_checkpoints", "num_epochs", "debug", "print_step",
                        "vdl_log_dir", "reader_thread", "reader_buf_size", "cpu_threads", "max_iter",
                        "is_profiler", "profiler_path", "profilier_path", "save_step", "validate", "test_batch_size"}


PER_CLASS_LOG_LIMIT = 100  # the last epoch logs every class's recall up to this many classes
MIN_BATCH_PER_DEVICE = 8  # below this, per-device BatchNorm statistics get noisy


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the message names the step and the last good checkpoint."""


def _log(rank: RankInfo, message: str) -> None:
    if rank.is_main:
        print(message, flush=True)


def resolve_seed(args: argparse.Namespace) -> int:
    if args.enable_ce:
        return 1000 if args.random_seed is None else args.random_seed
    if args.random_seed is not None:
        return args.random_seed
    return int.from_bytes(os.urandom(4), "little") % (2**31)


def fill_from_good_rows(images, labels, size: int):
    """A batch that lost images to read errors is refilled to ``size`` by repeating its good rows, so every
    step trains on the batch size the schedule and BatchNorm expect (a single image per batch gives
    BatchNorm one value per channel on small feature maps, and the loss turns NaN)."""
    count = len(labels)
    if count == 0 or count >= size:
        return images, labels
    rows = np.resize(np.arange(count), size)
    if isinstance(images, paddle.Tensor):
        index = paddle.to_tensor(rows)
        return paddle.gather(images, index), paddle.gather(labels, index) if isinstance(labels, paddle.Tensor) \
            else np.asarray(labels)[rows]
    return np.asarray(images)[rows], np.asarray(labels)[rows]


def use_sync_batchnorm(model: paddle.nn.Layer, device: str, world_size: int) -> tuple[paddle.nn.Layer, str]:
    """--use_sync_bn: BatchNorm layers become SyncBatchNorm (statistics over every process's batch) on a
    multi-process GPU run; anywhere else plain BatchNorm stays, and the note says why."""
    if device != "gpu" or world_size < 2:
        where = "a CPU run (Paddle's SyncBatchNorm has GPU kernels only)" if device != "gpu" else "a single process"
        return model, f"note: --use_sync_bn has no effect in {where}: plain BatchNorm, per-process statistics"
    # convert_sync_batchnorm replaces every _BatchNormBase sublayer, sharing its weight, bias and running
    # statistics (paddle/nn/layer/norm.py, SyncBatchNorm.convert_sync_batchnorm)
    model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    converted = sum(isinstance(layer, paddle.nn.SyncBatchNorm) for layer in model.sublayers())
    if not converted:
        return model, "note: --use_sync_bn: the model has no BatchNorm layer; nothing converted"
    return model, f"--use_sync_bn: {converted} BatchNorm layers share statistics over {world_size} processes"


class Trainer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = select_device(args.use_gpu)
        self.rank = distributed.init(self.device)
        self.control = distributed.Control(self.rank)
        # one seed for all ranks: each rank shuffles with it and takes its own share of one order
        self.seed = self.control.from_main(resolve_seed(args))
        self.start_epoch = 0
        self.start_step = 0  # within start_epoch, when resuming a checkpoint saved mid-epoch
        self.global_step = 0
        self.optimizer_steps_here = 0
        self.skipped_steps = 0
        self.last_checkpoint: str | None = None
        self.stop_requested: str | None = None  # this rank heard a signal
        self.stop_agreed: str | None = None  # all ranks stop (set from the step agreement)
        self.halt = False  # max_iter reached or a stop signal: save and leave after this step
        self.lock: RunLock | None = None
        self._loaders: dict = {}
        self.val_per_class: list[dict] | None = None  # of the last validation; saved in meta.json
        self.bad_log = BadImageLog(log=self._log_bad)
        self.model_dir = os.path.join(args.model_save_dir, args.model)
        self._prepare_run_directory()
        self._load_lists()
        self._build_model()
        self._build_data()
        self._build_solver()
        self._restore()
        self._wrap_data_parallel()

    def _log_bad(self, message: str) -> None:
        who = f"rank {self.rank.rank}: " if self.rank.distributed else ""
        print(f"{who}{message}", flush=True)

    # ------------------------------------------------------------ setup

    def _prepare_run_directory(self) -> None:
        """Rank 0 checks the directory is writable, takes the run lock, and refuses to mix two runs."""
        args = self.args
        failure = None
        if self.rank.is_main:
            try:
                probe_output_dir(self.model_dir, "--model_save_dir")
                self.lock = RunLock(self.model_dir)
                self.lock.acquire()
                if not args.checkpoint and args.resume is None:
                    self._refuse_foreign_checkpoints()
            except UsageError as err:
                failure = str(err)
        failure = self.control.text_from_main(failure)
        if failure:
            if self.lock is not None:
                self.lock.release()
            raise UsageError(failure)

    def _refuse_foreign_checkpoints(self) -> None:
        existing = latest_checkpoint(self.model_dir)
        if existing is None:
            return
        if self.args.overwrite_checkpoints:
            moved = set_aside_checkpoints(self.model_dir)
            print(f"--overwrite_checkpoints: starting over; the previous run's checkpoints were moved to {moved}",
                  flush=True)
            return
        raise UsageError(f"{self.model_dir} holds another run's checkpoints (newest: {existing}); resume it with "
                         f"--resume auto, write this run elsewhere with another --model_save_dir, or start over "
                         "with --overwrite_checkpoints=True (the old checkpoints are kept aside)")

    def _load_lists(self) -> None:
        args = self.args
        quiet = {} if self.rank.is_main else {"warn": None}  # list warnings once, not once per rank
        # a list file, or with none the folder data set <data_dir>/train/<class>/... (class ids: sorted folders)
        train_split = resolve_split(args.data_dir, args.train_list, "train_list.txt", "train", args.class_dim, **quiet)
        self.train_list, train, self.class_names = train_split.source, train_split.summary, train_split.class_names
        val: ListSummary | None = None
        if args.validate:
            val_split = resolve_split(args.data_dir, args.val_list, "val_list.txt", "val", args.class_dim, **quiet)
            self.val_list, val = val_split.source, val_split.summary
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
            self._check_pretrained_fit(report)
            _log(self.rank, f"pretrained {args.pretrained_model}: {report.summary()}")
        if args.use_sync_bn:
            self.model, note = use_sync_batchnorm(self.model, self.device, self.rank.world_size)
            _log(self.rank, note)

    def _check_pretrained_fit(self, report) -> None:
        """Weights of another architecture are an error: only the classifier may be new (fine-tuning)."""
        classifier = get_model_meta(self.args.model).classifier
        excluded = set(report.excluded)

        def outside_head(keys):
            return [k for k in keys if k not in excluded and not any(k.startswith(p + ".") for p in classifier)]

        misfits = outside_head(report.missing) + outside_head(report.shape_mismatch)
        if misfits and not self.args.allow_partial_pretrained:
            raise UsageError(
                f"--pretrained_model {self.args.pretrained_model}: {len(misfits)} tensors outside the classifier "
                f"are missing or differ in shape (e.g. {misfits[0]}): weights of another architecture than "
                f"--model={self.args.model}? Pass --allow_partial_pretrained=True to load what fits")

    def _build_data(self) -> None:
        args, rank = self.args, self.rank
        if args.batch_size % rank.world_size:
            raise UsageError(f"--batch_size {args.batch_size} is not divisible by the {rank.world_size} "
                             "processes; use a multiple of the number of devices")
        self.batch_per_rank = args.batch_size // rank.world_size
        if self.batch_per_rank < 1:
            raise UsageError(f"--batch_size {args.batch_size} is smaller than the number of devices")
        if rank.distributed and self.batch_per_rank < MIN_BATCH_PER_DEVICE and not args.freeze_bn:
            _log(rank, f"warning: --batch_size {args.batch_size} over {rank.world_size} devices is "
                 f"{self.batch_per_rank} images per device: BatchNorm statistics from fewer than "
                 f"{MIN_BATCH_PER_DEVICE} images are noisy; raise --batch_size (and --lr with it)")
        train_cfg = preprocess_config(args, training=True)
        self.eval_cfg = preprocess_config(args, training=False)
        # workers ship uint8 pixels (4x less shared memory); normalisation runs on the device
        self.train_set = ImageListDataset(self.train_samples, train_cfg, training=True, seed=self.seed,
                                          uint8_hwc=True)
        self.normalize = DeviceNormalizer(train_cfg.mean, train_cfg.std)
        drop_last = len(self.train_samples) // rank.world_size >= self.batch_per_rank
        self.train_sampler = EpochBatchSampler(len(self.train_samples), self.batch_per_rank, shuffle=True,
                                               seed=self.seed, drop_last=drop_last, rank=rank.rank,
                                               world_size=rank.world_size)
        self.val_set = ImageListDataset(self.val_samples, self.eval_cfg, training=False, uint8_hwc=True)
        # --test_batch_size is per device: validation results do not depend on it, its speed does
        self.val_sampler = EpochBatchSampler(len(self.val_samples), args.test_batch_size, shuffle=False,
                                             rank=rank.rank, world_size=rank.world_size)

    def _build_solver(self) -> None:
        args = self.args
        if args.total_images:
            batches = math.ceil(args.total_images / args.batch_size)
        else:
            batches = len(self.train_sampler)
        self.accum_steps = args.accum_steps
        self.steps_per_epoch = max(1, math.ceil(batches / self.accum_steps))  # optimizer steps
        spec = ScheduleSpec(args.lr, self.steps_per_epoch, args.num_epochs, args.warm_up_epochs,
                            tuple(args.step_epochs), args.decay_epochs, args.decay_rate)
        self.scheduler = build_scheduler(args.lr_strategy, spec)
        self.optimizer = build_optimizer(args.optimizer, self.model.parameters(), self.scheduler,
                                         args.l2_decay, args.momentum_rate, args.clip_grad_norm)
        self.loss_fn = ClassificationLoss(args.label_smoothing_epsilon if args.use_label_smoothing else 0.0)
        self.amp = AmpSettings.from_args(args, self.device)
        if self.amp.note():
            _log(self.rank, self.amp.note())
        self.scaler = self.amp.make_scaler()
        self.model, self.optimizer = self.amp.decorate(self.model, self.optimizer)
        # after decorate: the average follows the tensors training updates (float16 ones under O2)
        self.ema = ModelEMA(self.model, args.ema_decay) if args.use_ema else None

    def _restore(self) -> None:
        """Rank 0 picks the checkpoint; every rank loads that one (a rank that cannot read it stops all)."""
        args = self.args
        if args.resume not in (None, "auto"):
            raise UsageError(f"--resume {args.resume!r}: only 'auto' is accepted (or use --checkpoint DIR)")
        directory = args.checkpoint
        if self.rank.is_main and args.resume == "auto" and not directory:
            directory = latest_checkpoint(self.model_dir)
            if directory is None:
                print(f"--resume auto: no complete checkpoint in {self.model_dir}; starting fresh", flush=True)
        directory = self.control.text_from_main(directory)
        if not directory:
            return
        meta, failure = None, None
        try:
            meta = load_checkpoint(directory, self.model, self.optimizer, self.ema, args.model)
        except UsageError as err:
            failure = str(err)
        failed_ranks = self.control.sum([1 if failure else 0])[0]
        if failed_ranks:
            raise UsageError(failure or f"--checkpoint {directory}: {failed_ranks} other rank(s) cannot read it; "
                             "every node needs the checkpoint at this path (a shared filesystem, or a copy)")
        note = restore_scaler(self.scaler, meta.get("scaler"))
        if note:
            _log(self.rank, note)
        self.start_epoch = int(meta.get("next_epoch", int(meta["epoch"]) + 1))
        self.start_step = int(meta.get("next_step", 0))
        self.global_step = int(meta.get("global_step", self.start_epoch * self.steps_per_epoch))
        if args.random_seed is None and not args.enable_ce and "seed" in meta:
            self.seed = int(meta["seed"])
            self.train_set.seed = self.train_sampler.seed = self.seed
        self.last_checkpoint = directory
        if self.rank.is_main:
            self._say_changed_flags(directory, meta.get("args") or {})
        # every rank says it: all must resume from the same checkpoint
        who = f"rank {self.rank.rank}: " if self.rank.distributed else ""
        print(f"{who}resumed from {directory}: continuing at epoch {self.start_epoch} step {self.start_step}",
              flush=True)

    def _say_changed_flags(self, directory: str, saved: dict) -> None:
        current = vars(self.args)
        changed = [f"--{k} {saved[k]} -> {current[k]}" for k in sorted(current)
                   if k in saved and k not in RESUME_NEUTRAL_FLAGS and saved[k] != current[k]]
        if changed:
            print(f"note: resuming {directory} with flags that differ from its run: {'; '.join(changed)}",
                  flush=True)

    def _wrap_data_parallel(self) -> None:
        # DataParallel broadcasts rank 0's parameters and buffers at construction
        # (paddle.distributed.parallel.sync_params_buffers): built after the restore, so all ranks start equal.
        self.net = paddle.DataParallel(self.model) if self.rank.distributed else self.model

    # ------------------------------------------------------------ loop

    def fit(self) -> dict:
        args = self.args
        accumulation = f" of {self.accum_steps} batches each" if self.accum_steps > 1 else ""
        _log(self.rank, f"model {args.model}: {self.class_dim} classes, {len(self.train_samples)} train / "
             f"{len(self.val_samples)} val images, {self.steps_per_epoch} steps/epoch{accumulation}, "
             f"seed {self.seed}, device {self.device}, {self.rank.world_size} process(es)")
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
                if self.halt or self._agree_stop():
                    break
        finally:
            self._restore_signal_handlers(previous)
            if writer is not None:
                writer.close()
            self.close()
        if self.skipped_steps:
            _log(self.rank, f"skipped {self.skipped_steps} steps in which a rank had no readable image")
        if self.rank.distributed:  # every rank says it: all must end at the same step
            print(f"rank {self.rank.rank}: finished at global step {self.global_step}", flush=True)
        return result

    def close(self) -> None:
        """Release the model directory for other runs and stop the loaders' workers (fit does this at its end)."""
        if self.lock is not None:
            self.lock.release()
        for loader in self._loaders.values():
            if hasattr(loader, "close"):  # a DALI loader: its pipeline and source worker processes
                loader.close()
        self._loaders.clear()

    def _agree_stop(self) -> bool:
        """Between epochs: did any rank hear a stop signal during validation or saving?"""
        stops = self.control.sum([1 if self.stop_requested else 0])[0]
        if stops and not self.stop_agreed:
            self.stop_agreed = self.stop_requested or "SIGTERM"
        return bool(stops)

    def _batches(self, epoch: int, first_step: int):
        self.train_sampler.set_epoch(epoch, first_step)
        self.train_set.epoch = epoch
        loader = self._loader("train")
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

    def _loader(self, which: str):
        """One loader per split for the whole run: each epoch iterates it again (the sampler's epoch is set
        first), so a DALI loader keeps its pipeline and worker processes."""
        if which not in self._loaders:
            dataset, sampler = (self.train_set, self.train_sampler) if which == "train" else \
                (self.val_set, self.val_sampler)
            self._loaders[which] = make_loader(dataset, sampler, self.args.reader_thread,
                                               self.args.reader_buf_size, self.args.use_dali)
        return self._loaders[which]

    def _train_epoch(self, epoch: int, first_step: int, writer) -> int:
        """Train one epoch from ``first_step``; returns the number of steps done (fewer when stopped early)."""
        args = self.args
        self.net.train()
        if args.freeze_bn:
            for layer in self.model.sublayers():
                if isinstance(layer, (paddle.nn.layer.norm._BatchNormBase, paddle.nn.BatchNorm)):
                    layer.eval()
        batches = len(self.train_sampler)
        steps_in_epoch = math.ceil(batches / self.accum_steps)  # optimizer steps, for the log
        window = _Window(self.rank)
        epoch_start = time.perf_counter()
        profiler = self._profiler(epoch)
        health = _EpochHealth(self, batches - first_step)
        group = _AccumulationGroup(first_step, batches, self.accum_steps)
        step = first_step - 1
        for step, (images, labels, _indices, bad) in enumerate(self._batches(epoch, first_step), start=first_step):
            self.bad_log.add(bad)
            # the step's agreement: images read and unreadable, stop requests, ranks with no image
            read, unreadable, stops, empty = self.control.sum(
                [len(labels), len(bad), 1 if self.stop_requested else 0, 1 if len(labels) == 0 else 0])
            if step == group.end:
                group.begin(step)
            if stops and step == group.start:  # a stop heard mid-group waits for the group's end
                self.stop_agreed = self.stop_requested or "SIGTERM"
                _log(self.rank, f"{self.stop_agreed}: every rank stops before step {step // self.accum_steps}; "
                     "saving a checkpoint before exiting")
                self.halt = True
                return step
            health.add(read, unreadable)
            health.check(epoch, group.start)
            if empty:
                # some rank has nothing to train on: all ranks skip the batch together (the same collectives)
                self.skipped_steps += 1
                _log(self.rank, f"[train] epoch {epoch} batch {step}: skipped on every rank ({empty} rank(s) had "
                     "no readable image)")
            else:
                images, labels = fill_from_good_rows(images, labels, len(labels) + len(bad))
                # per-batch, per-rank seeds: dropout, drop-connect and mixup repeat exactly after a resume
                paddle.seed(self.seed * 100_003 + self.global_step * 1_009 + self.rank.rank
                            + (step - group.start) * 7_919)
                mixup = batch_augmentation(args, np.random.default_rng([self.seed, epoch, step, self.rank.rank]))
                last = step == group.end - 1
                self._accumulate(images, labels, mixup, window, group.size, sync=last)
                group.trained += 1
                group.synced = last
            if profiler is not None:
                profiler.step()
            if step < group.end - 1:
                continue
            self._finish_group(group, window)
            index = step // self.accum_steps
            if window.steps and (index % args.print_step == 0 or step == batches - 1):
                self._log_window(epoch, index, steps_in_epoch, window, epoch_start, writer)
            if args.max_iter and self.global_step >= args.max_iter:
                _log(self.rank, f"--max_iter {args.max_iter} reached")
                self.halt = True
                return step + 1
        if window.steps:
            self._log_window(epoch, step // self.accum_steps, steps_in_epoch, window, epoch_start, writer)
        health.finish(epoch)
        if profiler is not None:
            profiler.stop()
            profiler.summary()
        return batches

    def _accumulate(self, images, labels, mixup, window: _Window, group_size: int, sync: bool) -> None:
        """Forward and backward of one loader batch; its gradient adds to the group's. Under DataParallel
        only the group's last batch (``sync``) all-reduces: DataParallel.forward prepares the reducer only
        when grad_need_sync is set, and no_sync() clears it (paddle/distributed/parallel.py,
        DataParallel.no_sync / forward); the reducer then all-reduces the accumulated gradients."""
        x = self.normalize(images)
        y = labels if isinstance(labels, paddle.Tensor) else paddle.to_tensor(labels)
        y_b, lam = None, 1.0
        if mixup is not None:
            x, y, y_b, lam = mixup(x, y)
        quiet = self.net.no_sync() if self.rank.distributed and not sync else contextlib.nullcontext()
        with quiet:
            with self.amp.autocast():
                output = self.net(x)
                loss = self.loss_fn(output, y, y_b, lam)
            # the group's gradient is the mean over its batches (a group of 1: the loss as it is)
            share = loss / group_size if group_size > 1 else loss
            if self.scaler.is_enable():
                self.scaler.scale(share).backward()  # one loss scale for the whole group: update() runs at its end
            else:
                share.backward()
        window.add(loss, main_logits(output), y)

    def _finish_group(self, group: _AccumulationGroup, window: _Window) -> None:
        """The optimizer step at a group's end (with AMP: one unscale, one overflow check, one scale update)."""
        self.global_step += 1
        if not group.trained:  # every batch of the group was skipped: the schedule still moves on
            self.scheduler.step()
            return
        if self.rank.distributed and not group.synced:
            # the group's last batch was skipped on every rank, so no backward all-reduced the gradients;
            # average them here (fused_allreduce_gradients with no hybrid group: the global group, scaled by
            # 1/world_size; paddle/distributed/fleet/utils/hybrid_parallel_util.py)
            from paddle.distributed.fleet.utils.hybrid_parallel_util import fused_allreduce_gradients

            fused_allreduce_gradients(list(self.model.parameters()), None)
        window.lr = self.optimizer.get_lr()  # the lr this step uses (logged), before the schedule moves
        if self.scaler.is_enable():
            self.scaler.step(self.optimizer)  # unscales, then optimizer.step; skipped when gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.optimizer_steps_here += 1

    def _log_window(self, epoch, step, steps, window: _Window, epoch_start, writer) -> None:
        """One host sync per logged step: loss and accuracy since the last log, summed over ranks."""
        loss, top1, top5, images, rate = window.flush()
        if not math.isfinite(loss):
            where = self.last_checkpoint or "none yet"
            raise TrainingDiverged(f"loss is {loss} at step {self.global_step} (epoch {epoch} step {step}, or in the "
                                   f"--print_step {self.args.print_step} steps before it); last good checkpoint: "
                                   f"{where}. Lower --lr or check the data.")
        remaining_steps = (steps - step - 1) + (self.args.num_epochs - epoch - 1) * steps
        elapsed_per_step = (time.perf_counter() - epoch_start) / (step + 1)
        _log(self.rank, f"[train] epoch {epoch} step {step}/{steps} loss {loss:.5f} "
             f"top1 {top1:.4f} top5 {top5:.4f} lr {window.lr:.6f} "
             f"{rate:.1f} img/s ETA {format_seconds(remaining_steps * elapsed_per_step)}")
        if writer is not None:
            writer.add_scalar("train/loss", loss, self.global_step)
            writer.add_scalar("train/lr", window.lr, self.global_step)
            writer.add_scalar("train/top1", top1, self.global_step)

    def _forward_for_eval(self, batch) -> np.ndarray:
        """Validation runs under the training precision: under O2 the convolutions are float16 and only
        auto_cast casts the float32 input batch for them. Logits come back as float32."""
        x = self.normalize(batch)
        with self.amp.autocast():
            logits = main_logits(self.model(x))
        return logits.astype("float32").numpy()

    def validate(self, use_ema: bool = False) -> tuple[Accumulator, int]:
        """Top-1/top-5 over every rank's share; the per-class counts of the run land in ``self.class_counts``."""
        loader = self._loader("val")
        live = self.ema.swap_into(self.model) if use_ema else None
        counts = report.ClassCounts(self.class_dim)
        try:
            bad = BadImageLog(log=self._log_bad, seen=self.bad_log.messages)
            accuracy = evaluate(self.model, loader, bad, show_progress=self.rank.is_main,
                                forward=self._forward_for_eval, class_counts=counts)
        finally:
            if live is not None:
                assign_state(self.model, live)
        self.class_counts = report.all_reduce_class_counts(counts)
        return all_reduce_counts(accuracy, bad.count)

    def _report_classes(self, epoch: int, writer) -> None:
        """Per-class recall of this validation: the weakest classes in the log every epoch, every class at
        the last one, all of them in the checkpoint's meta.json; the confusion matrix to VisualDL."""
        names = getattr(self, "class_names", None)
        rows = report.per_class_summary(self.class_counts.confusion, names, self.class_counts.top5_hits)
        self.val_per_class = [{k: row[k] for k in ("class_id", "name", "support", "recall", "precision")}
                              for row in rows if row["support"]]
        by_recall = sorted(self.val_per_class, key=lambda row: row["recall"])
        last = epoch == self.args.num_epochs - 1
        shown = by_recall if last and len(by_recall) <= PER_CLASS_LOG_LIMIT else by_recall[:3]
        what = "per-class recall" if shown is by_recall else "lowest recall"
        _log(self.rank, f"[val] epoch {epoch} {what}: " +
             ", ".join(f"{row['name']} {row['recall']:.3f}" for row in shown))
        if writer is not None:
            image = report.render_confusion_matrix(self.class_counts.confusion, names)
            writer.add_image("val/confusion_matrix", image, epoch, dataformats="HWC")

    def _synchronise_statistics(self) -> None:
        """Make every rank hold rank-averaged BatchNorm statistics (and EMA), so the model each rank
        validates is the model rank 0 saves."""
        if not self.rank.distributed:
            return
        distributed.average_float_state(distributed.buffers_and_statistics(self.model), self.rank)
        if self.ema is not None:
            distributed.average_float_state([self.ema.flat], self.rank)

    def _end_epoch(self, epoch: int, writer) -> dict:
        args, result = self.args, {"epoch": epoch}
        self._synchronise_statistics()
        if args.validate and self.val_samples:
            for tag, use_ema in (("", False), ("ema_", True)) if self.ema else (("", False),):
                accuracy, bad = self.validate(use_ema)
                result.update({f"{tag}top1": accuracy.top(1), f"{tag}top5": accuracy.top(5),
                               f"{tag}samples": accuracy.samples})
                _log(self.rank, f"[val] epoch {epoch} {tag or ''}top1 {accuracy.top(1):.4f} "
                     f"top5 {accuracy.top(5):.4f} samples {accuracy.samples} skipped {bad}")
                if writer is not None:
                    writer.add_scalar(f"val/{tag}top1", accuracy.top(1), epoch)
                if not use_ema:
                    self._report_classes(epoch, writer)
        last = epoch == args.num_epochs - 1
        if (epoch + 1) % args.save_step == 0 or last or self.halt:
            self._save(epoch, next_epoch=epoch + 1, next_step=0)
        return result

    def _save(self, epoch: int, next_epoch: int, next_step: int) -> None:
        """Epoch checkpoints go to <model>/<epoch>; a mid-epoch stop to <model>/<epoch>_step<k>.

        Called by every rank at the same point; rank 0 writes, and no rank leaves before it has written
        (a rank that exits first would make the launcher kill rank 0 mid-save).
        """
        if next_step == 0 and next_epoch == epoch:  # stopped before the epoch's first step
            epoch -= 1
            if epoch < 0 or not self.optimizer_steps_here and self.last_checkpoint:
                return  # nothing trained since the start or since the checkpoint resumed from
        if next_step:
            self._synchronise_statistics()
        failure = None
        if self.rank.is_main:
            failure = self._write_checkpoint(epoch, next_epoch, next_step)
        failure = self.control.text_from_main(failure)
        if failure:
            raise UsageError(failure)

    def _write_checkpoint(self, epoch: int, next_epoch: int, next_step: int) -> str | None:
        name = str(epoch) if next_step == 0 else f"{epoch}_step{next_step}"
        directory = os.path.join(self.model_dir, name)
        meta = {"model": self.args.model, "class_dim": self.class_dim, "seed": self.seed,
                "next_epoch": next_epoch, "next_step": next_step,
                "global_step": self.global_step, "args": vars(self.args),
                "preprocess": self.eval_cfg.__dict__, "world_size": self.rank.world_size}
        if self.val_per_class is not None:
            meta["val_per_class"] = self.val_per_class
        try:
            save_checkpoint(directory, epoch=epoch, model=self.model, optimizer=self.optimizer, ema=self.ema,
                            scaler_state=scaler_state(self.scaler), extra_meta=meta, labels=self.class_names)
        except OSError as err:
            return (f"saving checkpoint {directory} failed ({err.strerror or err}); the previous "
                    f"checkpoint {self.last_checkpoint or '(none)'} is intact")
        self.last_checkpoint = directory
        print(f"saved checkpoint {directory}", flush=True)
        return None

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


class _Window:
    """Loss and top-k hits since the last logged step, kept on the device: reading them is the only host
    sync, and it happens once per --print_step steps."""

    def __init__(self, rank: RankInfo):
        self.rank = rank
        self.lr = 0.0
        self._reset()

    def _reset(self) -> None:
        self.totals = None  # device tensor [loss sum over steps, steps, images, top1 hits, top5 hits]
        self.steps = 0
        self.started = time.perf_counter()

    @paddle.no_grad()
    def add(self, loss: paddle.Tensor, logits: paddle.Tensor, labels: paddle.Tensor) -> None:
        logits = logits.detach().astype("float32")
        k = min(5, logits.shape[1])
        top = paddle.topk(logits, k=k, axis=1)[1]
        hits = (top == labels.reshape([-1, 1]).astype(top.dtype)).astype("float32")
        one = paddle.full([], 1.0, dtype="float32")  # filled on the device: no host-to-device copy
        row = paddle.stack([loss.detach().astype("float32").reshape([]), one, one * labels.shape[0],
                            hits[:, :1].sum(), hits.sum()])
        self.totals = row if self.totals is None else self.totals + row
        self.steps += 1

    def flush(self) -> tuple[float, float, float, int, float]:
        """(mean loss, top1, top5, images, images/s) over all ranks since the last flush."""
        totals = self.totals
        if self.rank.distributed:
            totals = totals.clone()
            import paddle.distributed as dist

            dist.all_reduce(totals)
        loss_sum, steps, images, top1, top5 = (float(v) for v in totals.numpy())
        elapsed = time.perf_counter() - self.started
        self._reset()
        return loss_sum / steps, top1 / images, top5 / images, int(images), images / max(elapsed, 1e-9)


class _AccumulationGroup:
    """The loader batches [start, end) of one optimizer step: groups of ``accum_steps`` batches counted from
    the epoch's start, the last one cut at the epoch's end; ``trained`` of them reached backward (a batch no
    rank could read is skipped), ``synced`` when the last one did (its backward all-reduced the group)."""

    def __init__(self, first_step: int, batches: int, accum_steps: int):
        self.batches, self.accum_steps = batches, accum_steps
        self.start = self.end = first_step
        self.trained, self.synced = 0, False

    def begin(self, step: int) -> None:
        self.start = step
        self.end = min(self.batches, (step // self.accum_steps + 1) * self.accum_steps)
        self.trained, self.synced = 0, False

    @property
    def size(self) -> int:
        return self.end - self.start


class _EpochHealth:
    """Counts an epoch's unreadable images over all ranks and stops the run when they are too many."""

    def __init__(self, trainer: Trainer, steps: int):
        self.trainer = trainer
        self.images_expected = max(1, steps * trainer.batch_per_rank * trainer.rank.world_size)
        self.limit = trainer.args.max_bad_image_fraction
        self.read = self.unreadable = 0

    def add(self, read: int, unreadable: int) -> None:
        self.read += read
        self.unreadable += unreadable

    def check(self, epoch: int, step: int) -> None:
        if self.unreadable > allowed_bad_images(self.images_expected, self.limit):
            self._stop(epoch, step, f"{self.unreadable} of this epoch's {self.images_expected} images are "
                       f"unreadable so far, more than --max_bad_image_fraction {self.limit}")

    def finish(self, epoch: int) -> None:
        if self.read == 0:
            self._stop(epoch, None, "no image of the epoch could be read")
        if self.unreadable:
            _log(self.trainer.rank, f"epoch {epoch}: {self.unreadable} unreadable images skipped (all ranks)")

    def _stop(self, epoch: int, step: int | None, what: str) -> None:
        trainer = self.trainer
        cause = likely_cause(trainer.train_samples, trainer.args.data_dir, trainer.train_list)
        saved = ""
        if step is not None and trainer.optimizer_steps_here:
            trainer._save(epoch, next_epoch=epoch, next_step=step)  # keep the work done so far
            saved = f"; the work so far is saved in {trainer.last_checkpoint}"
        raise UnreadableDataError(f"{trainer.train_list}: {what}. Likely cause: {cause}{saved}")
