"""The generate and info commands: output, progress, metadata, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
from typer.testing import CliRunner

from dgx_music.cli import app

runner = CliRunner()


def test_generate_with_synth_writes_a_wav_and_prints_metadata(tmp_path: Path):
    out = tmp_path / "track.wav"
    result = runner.invoke(
        app,
        [
            "generate",
            "funk groove, 110 bpm in E minor",
            "--model",
            "synth",
            "--duration",
            "4",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (32_000, 2, "PCM_16")
    assert info.duration == pytest.approx(4.0)
    assert str(out) in result.output.replace("\n", "")
    for label in ("tempo (BPM)", "key", "loudness (LUFS)", "true peak (dBTP)"):
        assert label in result.output


def test_generate_defaults_to_the_output_layout(tmp_path: Path):
    result = runner.invoke(app, ["generate", "calm", "--model", "synth", "--duration", "1"])
    assert result.exit_code == 0, result.output
    files = list((tmp_path / "outputs").rglob("*.wav"))
    assert len(files) == 1
    year, month = files[0].parent.parent.name, files[0].parent.name
    assert len(year) == 4 and len(month) == 2


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (["", "--model", "synth"], "prompt"),
        (["x" * 1001, "--model", "synth"], "prompt"),
        (["ok", "--model", "synth", "--duration", "-1"], "duration"),
        (["ok", "--model", "synth", "--duration", "0"], "duration"),
        (["ok", "--model", "synth", "--duration", "301"], "duration"),
        (["ok", "--model", "synth", "--top-p", "2"], "top_p"),
        (["ok", "--model", "synth", "--cfg", "0.5"], "guidance_scale"),
        (["ok", "--model", "no-such-model"], "model"),
    ],
)
def test_invalid_input_exits_2_naming_the_field(arguments: list[str], field: str, tmp_path: Path):
    result = runner.invoke(app, ["generate", *arguments])
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.wav"))


def test_unknown_model_lists_the_choices():
    result = runner.invoke(app, ["generate", "ok", "--model", "musicgen-huge"])
    assert result.exit_code == 2
    assert "synth" in result.output and "facebook/musicgen-small" in result.output


def test_missing_weights_exit_1_with_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))
    result = runner.invoke(
        app, ["generate", "ok", "--model", "facebook/musicgen-small", "--duration", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "facebook/musicgen-small" in result.output
    assert "download" in result.output
    assert "Traceback" not in result.output


def test_export_failure_exits_1(tmp_path: Path):
    result = runner.invoke(
        app,
        [
            "generate",
            "ok",
            "--model",
            "synth",
            "--duration",
            "1",
            "--out",
            str(tmp_path / "missing-dir" / "x.wav"),
        ],
    )
    assert result.exit_code == 1
    assert "directory missing" in result.output


def test_info_lists_offline_models():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for expected in ("torch", "transformers", "tiny", "synth", "facebook/musicgen-small"):
        assert expected in result.output


def test_info_lists_the_shape_twins_parameter_counts():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    title = "Shape twins (random weights, noise; for cost measurement)"
    assert title in result.output
    table = result.output.split(title, 1)[1]
    rows = [line for line in table.splitlines() if "twin:facebook/musicgen-" in line]
    assert len(rows) == 6
    small = next(line for line in rows if "twin:facebook/musicgen-small " in line)
    cells = [cell.strip() for cell in small.split("│") if cell.strip()]
    # text encoder, codec, decoder (420,371,456 parameters), total; millions
    assert cells == ["twin:facebook/musicgen-small", "109.6", "56.9", "420.4", "586.9"]


def test_db_check_reports_wrong_generation_counts_and_cleanup_rebuilds_them(database):
    from sqlalchemy import text

    from dgx_music.jobs.queue import JobManager
    from dgx_music.jobs.records import JobStatus
    from tests.utils.db_helpers import synth_request

    manager = JobManager(database)
    manager.submit(synth_request())
    assert runner.invoke(app, ["db", "check"]).exit_code == 0
    # Something went around the triggers: the listing total no longer matches the rows.
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE generation_counts SET total = total + 3 "
                "WHERE status = 'failed' AND shard = 0"
            )
        )
    checked = runner.invoke(app, ["db", "check"])
    assert checked.exit_code == 1
    assert "maintained count of failed generations is 3 but 0 rows" in checked.output
    dry = runner.invoke(app, ["db", "cleanup", "--dry-run"])
    assert "would rebuild the generation counts" in dry.output
    assert manager.counts_by_status()[JobStatus.FAILED] == 3
    cleaned = runner.invoke(app, ["db", "cleanup"])
    assert cleaned.exit_code == 0, cleaned.output
    assert "did rebuild the generation counts" in cleaned.output
    assert manager.counts_by_status() == manager.counted_by_rows()
    assert manager.list()[1] == 1
    assert runner.invoke(app, ["db", "check"]).exit_code == 0
