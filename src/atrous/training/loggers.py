"""Experiment trackers beside the JSONL log (``train.loggers``): TensorBoard, MLflow, Weights &
Biases. Each is imported only when a recipe names it (MLflow and W&B are the optional extras
``atrous[mlflow]`` / ``atrous[wandb]``); each receives the recipe, the logged scalars by step
and the run's files (metrics, the best checkpoint, the prediction picture)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from ..config_checks import LOGGER_NAMES as LOGGERS
from ..errors import ConfigError


class Logger(Protocol):
    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def artifact(self, path: Path) -> None: ...

    def close(self) -> None: ...


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train.lr": "0.007", ...}``: a recipe as the flat string parameters trackers show."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value)[:500]  # MLflow's parameter size limit
    return out


class TensorBoardLogger:
    """Scalars in ``out_dir/tensorboard`` (``torch.utils.tensorboard``)."""

    def __init__(self, out: Path, start: int, config: dict[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(
                "train.loggers names tensorboard: pip install tensorboard (or leave it out)"
            ) from err
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start or None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def artifact(self, path: Path) -> None:  # TensorBoard keeps no files
        pass

    def close(self) -> None:
        self.writer.close()


class MLflowLogger:
    """An MLflow run: the recipe as parameters and ``recipe.json``, the scalars as metrics,
    the run's files as artifacts. The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a
    local file store ``out_dir/mlruns`` (``mlflow ui --backend-store-uri out_dir/mlruns``)."""

    def __init__(self, out: Path, start: int, config: dict[str, Any]) -> None:
        try:
            import mlflow
        except ImportError as err:
            raise ConfigError("train.loggers names mlflow: pip install 'atrous[mlflow]'") from err
        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # a local file store needs no server or database (mlflow-skinny has no SQL store);
            # MLflow 3 asks for this opt-in to use it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "atrous"))
        self.run = mlflow.start_run(run_name=f"{out.name}" + (f"-from-{start}" if start else ""))
        mlflow.log_params(_flat(config))
        mlflow.log_dict(config, "recipe.json")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=step)

    def artifact(self, path: Path) -> None:
        self.mlflow.log_artifact(str(path))

    def close(self) -> None:
        self.mlflow.end_run()


class WandbLogger:
    """A Weights & Biases run in ``out_dir/wandb``: the recipe as its config, the scalars by
    step, the run's files as a model artifact, pictures as images. ``WANDB_MODE=offline``
    keeps it on disk (``wandb sync`` uploads it later); the project is ``WANDB_PROJECT`` or
    ``atrous``."""

    def __init__(self, out: Path, start: int, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ConfigError("train.loggers names wandb: pip install 'atrous[wandb]'") from err
        self.wandb = wandb
        out.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "atrous"), dir=str(out), config=config,
            name=out.name, resume="allow" if start else None,
        )  # fmt: skip

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def artifact(self, path: Path) -> None:
        if path.suffix == ".png":
            self.run.log({path.stem: self.wandb.Image(str(path))})
        artifact = self.wandb.Artifact(f"{self.run.name}-{path.stem}", type="model")
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def close(self) -> None:
        self.run.finish()


FACTORIES = {"tensorboard": TensorBoardLogger, "mlflow": MLflowLogger, "wandb": WandbLogger}


def open_loggers(
    names: tuple[str, ...], out: Path, start: int, config: dict[str, Any]
) -> list[Logger]:
    """The trackers ``names`` asks for (``jsonl`` is the run log itself). TensorBoard named by
    default but not installed is skipped, as before; the others are errors naming the extra."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(
            f"train.loggers: unknown {', '.join(unknown)}; available: {', '.join(LOGGERS)}"
        )
    loggers: list[Logger] = []
    for name in names:
        if name == "jsonl":
            continue
        try:
            loggers.append(FACTORIES[name](out, start, config))
        except ConfigError:
            if name != "tensorboard":
                raise
    return loggers
