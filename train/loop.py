"""The training loop: one process, or several under ``torchrun`` (DDP; gloo on the CPU).

AdamW, linear warm-up then cosine decay per iteration over a schedule sized to the data
(``train/schedule.py``), gradient clipping, a model EMA whose decay warms up, validation of the
EMA every ``val_every`` epochs with the best checkpoint kept (or a later one within
``train.selection_tolerance`` of it), early stopping after ``train.patience`` validations without
one, resume from ``last.pt``. The features
are standardised inside the model with statistics of the train split (``train/standardise.py``).
Rank 0 alone logs, validates, writes and draws the curve (``curve.png``); every rank computes the
same losses on its own shard.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from loco_stream.config import Config, ConfigError
from loco_stream.model import LoCo, LoCoOutput, locality_loss

from .checkpoint import load_checkpoint, save_checkpoint
from .curve import plot_curve
from .data import load_records, usable_records
from .dataset import WindowDataset, collate
from .evaluate import evaluate_split
from .labels import PointGrid
from .losses import PositiveCountEMA, diou_loss_1d, sigmoid_focal_loss
from .schedule import EarlyStopping, ema_decay, lr_factor, plan
from .standardise import measure_feature_stats


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when available) -> a torch device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but torch sees no CUDA GPU; use cpu or auto")
    return torch.device(name)


def compute_losses(
    output: LoCoOutput,
    batch: dict,
    grid: PointGrid,
    normalizer: PositiveCountEMA,
    config: Config,
    world_size: int,
) -> dict[str, torch.Tensor]:
    """Focal + DIoU (normalised by the positive-count EMA) + lambda * LCC locality loss."""
    targets = [grid.assign(s, k) for s, k in zip(batch["segments"], batch["labels"], strict=True)]
    device = output.cls_logits.device
    cls_target = torch.stack([t[0] for t in targets]).to(device)  # (B, N, C)
    reg_target = torch.stack([t[1] for t in targets]).to(device)  # (B, N, 2) or (B, N, C, 2)
    valid = output.point_mask > 0  # (B, N)
    if config.model.class_aware_regression:
        positive = (cls_target > 0) & valid[..., None]  # (B, N, C)
    else:
        positive = (cls_target.sum(-1) > 0) & valid  # (B, N)
    count = positive.sum().float()
    if world_size > 1:
        dist.all_reduce(count)
        count = count / world_size
    norm = normalizer.update(count.item())
    cls_loss = sigmoid_focal_loss(
        output.cls_logits[valid],
        cls_target[valid],
        config.train.focal_alpha,
        config.train.focal_gamma,
    )
    reg_loss = diou_loss_1d(output.offsets[positive], reg_target[positive])
    losses = {"cls": cls_loss / norm, "reg": reg_loss / norm}
    if output.similarity is not None:
        losses["lcc"] = config.model.lcc_weight * locality_loss(
            output.similarity,
            batch["mask"],
            config.model.lcc_positive_radius,
            config.model.lcc_negative_gap,
        )
    losses["total"] = sum(losses.values())
    return losses


@torch.no_grad()
def update_ema(ema: LoCo, model: LoCo, decay: float) -> None:
    for ema_value, value in zip(
        ema.state_dict().values(), model.state_dict().values(), strict=True
    ):
        if ema_value.dtype.is_floating_point:
            ema_value.lerp_(value, 1.0 - decay)
        else:
            ema_value.copy_(value)


def with_feature_stats(config: Config, records: list, progress: bool) -> Config:
    """``config`` whose ``model.feature_stats`` hold the train split's (kept when already set,
    taken from ``train.init_from``'s model when fine-tuning; none with train.standardize off)."""
    if config.model.feature_stats or not config.train.standardize:
        return config
    if config.train.init_from:
        stats = load_checkpoint(config.train.init_from)["config"]["model"].get("feature_stats", {})
    else:
        stats = measure_feature_stats(records, config.data, config.model, progress)
    return replace_feature_stats(config, stats)


def replace_feature_stats(config: Config, stats: dict) -> Config:
    return dataclasses.replace(config, model=dataclasses.replace(config.model, feature_stats=stats))


def train(config: Config, resume: str | None = None, progress: bool = True) -> Path:
    """Train on the schedule ``train/schedule.py`` plans; returns the best checkpoint's path."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    main_process = rank == 0
    train_config = config.train
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    seed_everything(train_config.seed)  # same initial weights on every rank

    records, names = load_records(
        config.data.annotations, config.data.train_split, config.model.num_classes
    )
    class_names = [names.get(i, str(i)) for i in range(config.model.num_classes)]
    listed = len(records)
    records, report = usable_records(records, config.data, config.data.train_split)
    if report and main_process:
        print(f"train: warning: {report}", file=sys.stderr, flush=True)
    resumed = load_checkpoint(resume) if resume else None  # read once: stats and state
    if resumed:  # the statistics the run started with
        stats = resumed["config"]["model"].get("feature_stats", {})
        config = replace_feature_stats(config, stats)
    config = with_feature_stats(config, records, progress and main_process)
    dataset = WindowDataset(
        records, config.data, config.model, train=True, seed=train_config.seed + rank
    )
    if world_size > 1:
        sampler = DistributedSampler(
            dataset, world_size, rank, shuffle=True, seed=train_config.seed
        )
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(train_config.seed))
    loader = DataLoader(
        dataset,
        train_config.batch_size,
        sampler=sampler,
        collate_fn=functools.partial(collate, multiple=config.model.max_stride),
    )

    device = training_device(train_config.device)
    model = LoCo(config.model).to(device)
    if train_config.init_from:  # fine-tuning: start from a trained model's (EMA) weights
        state = load_checkpoint(train_config.init_from, device)
        model.load_state_dict(state["ema"] if "ema" in state else state["model"])
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": train_config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=train_config.lr,
    )
    normalizer = PositiveCountEMA(
        train_config.loss_normalizer, train_config.loss_normalizer_momentum
    )
    output_dir = Path(train_config.output_dir)
    tolerance = train_config.selection_tolerance
    start_epoch, stopping = 0, EarlyStopping(train_config.patience, tolerance)
    if resumed:
        state = resumed
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, normalizer.value = state["epoch"], state["normalizer"]
        stopping = EarlyStopping(
            train_config.patience,
            tolerance,
            state["best_score"],
            state.get("validations_since_best", 0),
        )
    network = DistributedDataParallel(model) if world_size > 1 else model

    grids: dict[int, PointGrid] = {}  # batch length -> its point grid
    schedule = plan(train_config, len(records), len(loader))
    iterations_per_epoch = schedule.iterations_per_epoch
    total_iterations = schedule.total_iterations
    metrics_path = output_dir / "metrics.jsonl"
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        if progress:
            sized = " (sized to the data)" if schedule.sized_to_data else ""
            print(
                f"train: {len(records)} clips, {schedule.epochs} epochs of "
                f"{iterations_per_epoch} steps = {total_iterations} steps{sized}; stops early "
                f"after {train_config.patience} validations without a better avg mAP",
                flush=True,
            )
    for epoch in range(start_epoch, schedule.epochs):
        if stopping.should_stop:
            break
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        network.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{schedule.epochs}",
            disable=not (progress and main_process),
            leave=False,
        )
        for step, batch in enumerate(bar):
            iteration = epoch * iterations_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = train_config.lr * lr_factor(
                    iteration, schedule.warmup_iterations, total_iterations
                )
            for key in ("visual", "audio", "mask"):
                batch[key] = batch[key].to(device)
            output = network(batch["visual"], batch["audio"], batch["mask"])
            length = batch["mask"].shape[1]
            if length not in grids:
                grids[length] = PointGrid(config.model, length)
            grid = grids[length]
            losses = compute_losses(output, batch, grid, normalizer, config, world_size)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if train_config.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.clip_grad)
            optimizer.step()
            update_ema(ema, model, ema_decay(iteration, train_config.ema_decay))
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            bar.set_postfix(loss=f"{losses['total'].item():.3f}")
        record = {
            "epoch": epoch + 1,
            "step": (epoch + 1) * iterations_per_epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 2),
            **{f"loss_{k}": round(v / max(iterations_per_epoch, 1), 5) for k, v in sums.items()},
        }
        if len(records) < listed:  # data.skip_missing_features left videos out
            record["videos_without_features"] = listed - len(records)
        validate = train_config.val_every > 0 and (
            (epoch + 1) % train_config.val_every == 0 or epoch + 1 == schedule.epochs
        )
        if validate:  # every rank keeps the count, so that all stop together
            if main_process:
                result, _ = evaluate_split(
                    ema, config, class_names, config.data.val_split, progress=False
                )
                score = torch.tensor(result.average)
            else:
                score = torch.tensor(0.0)
            if world_size > 1:
                dist.broadcast(score, 0)
            record["val_mAP"] = round(score.item(), 3)
            if stopping.update(score.item()):
                record["best"] = True
            elif stopping.should_stop:
                record["stopped_early"] = True
        if main_process:
            state = {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "step": (epoch + 1) * iterations_per_epoch,
                "best_score": stopping.best,
                "validations_since_best": stopping.since_best,
                "normalizer": normalizer.value,
                "config": config.to_dict(),
                "class_names": class_names,
            }
            save_checkpoint(output_dir / "last.pt", state)
            if record.get("best") or train_config.val_every == 0:
                save_checkpoint(output_dir / "best.pt", state)
            with open(metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            if progress:
                print(json.dumps(record), flush=True)
        if world_size > 1:
            dist.barrier()
    if main_process:
        plot_curve(metrics_path, output_dir / "curve.png")
        if progress and stopping.should_stop:
            print(
                f"train: stopped early: {train_config.patience} validations without a better "
                f"avg mAP than {stopping.best:.2f}"
                + (f" (or one within {tolerance:g} of it)" if tolerance else ""),
                flush=True,
            )
    if world_size > 1:
        dist.destroy_process_group()
    return output_dir / "best.pt"
