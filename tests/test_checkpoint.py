"""The built-in LSTM checkpoints when asked and continues exactly where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import sweeper
from sweeper import context
from sweeper.tasks import lstm

CONF = Path(__file__).resolve().parents[1] / "conf"


def _tiny_cfg(epochs: int) -> object:
    base = OmegaConf.load(CONF / "base.yaml")
    tiny = OmegaConf.load(CONF / "scenario" / "tiny.yaml")
    cfg = OmegaConf.merge(base, tiny, {"training": {"epochs": epochs, "patience": 99},
                                       "scheduler": {"name": "cosine"}})
    cfg.pop("defaults")
    return cfg


@pytest.fixture(autouse=True)
def _clear_stop_flag():
    context._stop_requested.clear()
    yield
    context._stop_requested.clear()


class _StopAfter(list):
    """A trial's curve, where every ``sweeper.report`` lands: the report of ``epoch`` asks
    the trial to checkpoint, as the SLURM warning signal does. Nothing in ``sweeper`` is
    patched, so the task calls the real API."""

    def __init__(self, epoch: int | None) -> None:
        super().__init__()
        self.epoch = epoch

    def append(self, row: dict) -> None:
        super().append(row)
        if row["epoch"] == self.epoch:
            context.request_checkpoint()


def _run(cfg: object, work: Path, stop_after_epoch: int | None = None) -> tuple[object, list]:
    ctx = context.TrialContext(0, work, work / "trial", curve=_StopAfter(stop_after_epoch))
    with context.activate(ctx):
        return lstm.train(cfg), ctx.curve


def test_lstm_resumes_from_checkpoint_with_identical_results(tmp_path: Path) -> None:
    cfg = _tiny_cfg(epochs=6)
    full, full_curve = _run(cfg, tmp_path / "full")

    with pytest.raises(sweeper.TrialInterrupted) as stopped:
        _run(cfg, tmp_path / "cut", stop_after_epoch=2)
    assert stopped.value.status == "requeued"
    assert (tmp_path / "cut" / "trial" / "checkpoint.pt").is_file()
    context._stop_requested.clear()
    resumed, resumed_curve = _run(cfg, tmp_path / "cut")

    assert [p["epoch"] for p in resumed_curve] == [3, 4, 5]  # it continued, it did not restart
    assert resumed["epochs_run"] == full["epochs_run"] == 6
    assert resumed["val_loss"] == full["val_loss"]  # model, optimizer, schedule and RNG restored
    assert resumed["best_epoch"] == full["best_epoch"]
    assert [p["val_loss"] for p in resumed_curve] == [p["val_loss"] for p in full_curve[3:]]


def test_checkpoint_api_does_nothing_outside_a_sweep() -> None:
    # The analysis package was once `sweeper.report`, and importing it rebound the name
    # sweeper.report to the module. Import it first: the name must still be the function.
    import sweeper.analysis

    assert sweeper.report is context.report
    assert sweeper.load_checkpoint() is None
    assert sweeper.save_checkpoint({"epoch": 1}) is None
    assert sweeper.should_checkpoint() is False
    assert sweeper.trial_dir() is None
    sweeper.report(epoch=0, val_loss=1.0)  # no error, no effect
