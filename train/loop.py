"""The training loop: one process, or several under ``torchrun`` (DDP; gloo on the CPU).

AdamW, linear warm-up then cosine decay per iteration, gradient clipping, a model EMA, validation
of the EMA every ``val_every`` epochs with the best checkpoint kept, resume from ``last.pt``.
Rank 0 alone logs, validates and writes; every rank computes the same losses on its own shard.
"""

from __future__ import annotations

import copy
import functools
import json
import math
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
from .data import load_records, usable_records
from .dataset import WindowDataset, collate
from .evaluate import evaluate_split
from .labels import PointGrid
from .losses import PositiveCountEMA, diou_loss_1d, sigmoid_focal_loss


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


def lr_factor(iteration: int, warmup: int, total: int) -> float:
    """Linear warm-up from 0 to 1 over ``warmup`` iterations, then cosine decay to 0."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


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


def train(config: Config, resume: str | None = None, progress: bool = True) -> Path:
    """Train to ``config.train.epochs``; returns the path of the best checkpoint."""
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
    start_epoch, best_score = 0, -1.0
    if resume:
        state = load_checkpoint(resume, device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_score, normalizer.value = (
            state["epoch"],
            state["best_score"],
            state["normalizer"],
        )
    network = DistributedDataParallel(model) if world_size > 1 else model

    grids: dict[int, PointGrid] = {}  # batch length -> its point grid
    iterations_per_epoch = len(loader)
    total_iterations = train_config.epochs * iterations_per_epoch
    warmup_iterations = train_config.warmup_epochs * iterations_per_epoch
    metrics_path = output_dir / "metrics.jsonl"
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    for epoch in range(start_epoch, train_config.epochs):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        network.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{train_config.epochs}",
            disable=not (progress and main_process),
            leave=False,
        )
        for step, batch in enumerate(bar):
            iteration = epoch * iterations_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = train_config.lr * lr_factor(
                    iteration, warmup_iterations, total_iterations
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
            update_ema(ema, model, train_config.ema_decay)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            bar.set_postfix(loss=f"{losses['total'].item():.3f}")
        record = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 2),
            **{f"loss_{k}": round(v / max(iterations_per_epoch, 1), 5) for k, v in sums.items()},
        }
        if len(records) < listed:  # data.skip_missing_features left videos out
            record["videos_without_features"] = listed - len(records)
        validate = train_config.val_every > 0 and (
            (epoch + 1) % train_config.val_every == 0 or epoch + 1 == train_config.epochs
        )
        if main_process:
            if validate:
                result, _ = evaluate_split(
                    ema, config, class_names, config.data.val_split, progress=False
                )
                record["val_mAP"] = round(result.average, 3)
                if result.average > best_score:
                    best_score = result.average
                    record["best"] = True
            state = {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "best_score": best_score,
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
    if world_size > 1:
        dist.destroy_process_group()
    return output_dir / "best.pt"
