"""What `ltlight` says: a misspelt argument gets a suggestion, abbreviations are refused, only
argument errors are condensed, W&B runs carry their method and dataset."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltlight.cli import LongTailCLI, did_you_mean, main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits_lt" / "ldam_drw.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def run_main(*args):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIG), "--trainer.logger=false", *args])
    return exit_info.value.code


@pytest.mark.parametrize("typo", ["--trainer.max_epocs=1", "--trainer.max_epoch=1"])
def test_a_misspelt_or_abbreviated_argument_is_refused_with_a_suggestion(typo, capsys):
    assert run_main(typo) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unrecognized arguments" in last and typo.split("=")[0] in last, last
    assert "did you mean" in last and "--trainer.max_epochs" in last, last


def test_did_you_mean_stays_quiet_without_a_close_option():
    options = ["--trainer.max_epochs", "--data.init_args.seed"]
    assert did_you_mean("unrecognized arguments: --completely.other=3", options) == ""
    assert "--data.init_args.seed" in did_you_mean(
        "unrecognized arguments: --data.init_args.sed=1", options
    )


def test_a_lightning_callback_from_the_command_line_runs_and_its_config_is_saved(tmp_path):
    # It used to end in a condensed "a dict without class_path but with init_args", hiding that
    # the config could not be written (Timer's `interval` is an enum).
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "ltlight.cli", "fit", "--config", str(CONFIG),
               "--trainer.logger=false", *QUIET, "--trainer.max_epochs=1", "--run_name=timer",
               "--trainer.callbacks+=lightning.pytorch.callbacks.Timer"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = (tmp_path / "runs" / "digits_lt" / "ldam_drw" / "timer" / "config.yaml").read_text()
    assert "lightning.pytorch.callbacks.Timer" in saved and "interval: step" in saved


def test_an_error_that_is_not_about_an_argument_is_not_condensed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_main("--data=bad_data.SetupFails", *QUIET)
    assert code == 2
    err = capsys.readouterr().err
    assert "first line of the real cause" in err and "second line, kept" in err, err


def test_wandb_runs_carry_method_and_dataset_and_the_resolved_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = LongTailCLI(args=["--config", str(CONFIG), "--run_name=r1"], run=False)
    run = cli.trainer.logger.experiment
    try:
        assert run.name == "ldam_drw/r1"
        assert run.group == "ldam_drw"
        assert set(run.tags) == {"digits_lt", "ldam_drw"}
        assert (
            Path(run.dir)
            .resolve()
            .is_relative_to((tmp_path / "runs" / "digits_lt" / "ldam_drw" / "r1").resolve())
        )
    finally:
        run.finish()
