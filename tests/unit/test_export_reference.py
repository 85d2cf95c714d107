"""The exporter's fast paths against slow references kept here.

The exporter measures loudness with :mod:`dgx_music.audio.loudness` (block energies re-gated per
gain) and true peak with :mod:`dgx_music.audio.truepeak` (oversampling only where the peak can
be). These tests hold each against the straightforward computation it replaces: pyloudnorm for
loudness, a whole-signal 4x ``resample_poly`` for true peak, and the exporter's earlier loop
(:func:`reference_normalise`, which re-measured everything with both on every pass) for the
whole result, on varied material, lengths, rates and layouts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile
from scipy import signal

from dgx_music.audio import export, loudness, truepeak
from dgx_music.audio.export import (
    FLAG_LOUDNESS_BELOW_TARGET,
    LoudnessNormalizer,
    NormalisedAudio,
    export_wav,
)
from tests.utils import signals

RATE = 32_000


# --- slow references ---------------------------------------------------------------------------


def reference_envelope(audio: np.ndarray) -> np.ndarray:
    """Per-sample true peak across channels from oversampling the whole signal."""
    audio = np.atleast_2d(audio)
    oversampled = signal.resample_poly(audio, 4, 1, axis=-1)
    magnitude = np.abs(oversampled).max(axis=0)
    return magnitude.reshape(audio.shape[-1], 4).max(axis=1)


def reference_loudness(audio: np.ndarray, rate: int) -> float:
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(rate).integrated_loudness(np.atleast_2d(audio).T))


def reference_normalise(audio: np.ndarray, rate: int) -> NormalisedAudio:
    """The exporter's loop before the fast paths: pyloudnorm and a full oversampling per pass."""
    normalizer = LoudnessNormalizer()
    limiter = normalizer.limiter

    def limit(samples: np.ndarray) -> export.LimiterResult:
        envelope = np.maximum(reference_envelope(samples), np.abs(samples).max(axis=0))
        return limiter.process(samples, envelope)

    def finish(samples, lufs, gain_db, reduction_db, flags=()) -> NormalisedAudio:
        quantised = export.quantise_pcm16(samples).astype(np.float64) / export.PCM16_FULL_SCALE
        measured = reference_loudness(quantised, RATE) if lufs is not None else None
        if measured is not None and not math.isfinite(measured):
            measured = None  # silence has no loudness
        return NormalisedAudio(
            audio=quantised.astype(np.float32),
            sample_rate=RATE,
            integrated_lufs=measured,
            sample_peak=float(np.abs(quantised).max()),
            true_peak_dbtp=export.gain_to_db(float(reference_envelope(quantised).max())),
            gain_db=gain_db,
            limiter_reduction_db=reduction_db,
            flags=flags,
        )

    stereo = export.to_output_layout(audio, rate)
    lufs = reference_loudness(stereo, RATE) if stereo.shape[1] >= int(0.4 * RATE) else None
    if lufs is None or lufs < loudness.ABSOLUTE_GATE_LUFS:
        flag = export.FLAG_TOO_SHORT if lufs is None else export.FLAG_SILENT
        limited = limit(stereo)
        return finish(limited.audio, lufs, 0.0, limited.reduction_db, (flag,))
    peak = float(reference_envelope(stereo).max())
    max_gain_db = export.gain_to_db(limiter.ceiling / peak) + export.MAX_LIMITER_REDUCTION_DB
    gain_db = min(normalizer.target_lufs - lufs, max_gain_db)
    previous = None
    for _ in range(export.MAX_PASSES):
        limited = limit(stereo * export.db_to_gain(gain_db))
        achieved = reference_loudness(limited.audio, RATE)
        error = normalizer.target_lufs - achieved
        if abs(error) <= export.LOUDNESS_TOLERANCE_LU:
            return finish(limited.audio, achieved, gain_db, limited.reduction_db)
        if gain_db >= max_gain_db and error > 0:
            break
        step = error
        if previous is not None and gain_db != previous[0]:
            slope = (achieved - previous[1]) / (gain_db - previous[0])
            if slope > 0.05:
                step = error / slope
        previous = (gain_db, achieved)
        gain_db = min(gain_db + step, max_gain_db)
    flags = ()
    if achieved < normalizer.target_lufs - export.LOUDNESS_TOLERANCE_LU:
        flags = (FLAG_LOUDNESS_BELOW_TARGET,)
    return finish(limited.audio, achieved, gain_db, limited.reduction_db, flags)


# --- material ----------------------------------------------------------------------------------


def gated_sections(seconds: float = 6.0, rate: int = RATE) -> np.ndarray:
    """Loud noise with near-silent stretches around -75 LUFS: blocks on both sides of the gates."""
    audio = signals.noise(seconds, rms=0.1, sample_rate=rate, seed=3)
    frames = audio.shape[1]
    audio[:, frames // 4 : frames // 2] *= 10 ** (-57 / 20)
    audio[:, -frames // 5 :] *= 10 ** (-30 / 20)
    return audio


def tone_bursts(seconds: float = 8.0, rate: int = RATE) -> np.ndarray:
    """4 kHz bursts of 50 ms every half second: transients, and inter-sample peaks."""
    tone = signals.sine(seconds, 4_010.0, 0.7, sample_rate=rate)
    t = np.arange(tone.shape[1]) / rate
    return tone * ((t % 0.5) < 0.05)


def ebu_sine(seconds: float, dbfs: float, rate: int = 48_000) -> np.ndarray:
    """EBU Tech 3341 cases 1 and 2: a 1 kHz stereo sine at ``dbfs`` on each channel."""
    return signals.sine(seconds, 1_000.0, 10 ** (dbfs / 20), sample_rate=rate)


def quarter_rate_sine(seconds: float = 2.0, rate: int = 48_000) -> np.ndarray:
    """A sine at a quarter of the rate, 45 degrees off its samples (EBU Tech 3341 true-peak
    style): the samples sit 3.01 dB under the crests, which lie halfway between samples."""
    n = np.arange(int(seconds * rate))
    tone = np.sin(np.pi / 2 * n + np.pi / 4)
    return np.repeat(tone[np.newaxis, :], 2, axis=0)


def spiky_sine(seconds: float = 4.0, over: float = 1.2) -> np.ndarray:
    """A sine with a few single-sample spikes that end up ``over`` times the limiter's ceiling
    once the sine is at -16 LUFS: limiting is needed, but only a little."""
    tone = signals.sine(seconds, 440.0, 0.2)
    gain = 10 ** ((-16.0 - reference_loudness(tone, RATE)) / 20)
    spike = over * LoudnessNormalizer().limiter.ceiling / gain
    tone[:, RATE // 3 :: RATE] = spike
    return tone


MATERIAL = {
    "noise_16s": lambda: (signals.noise(16.0, rms=0.05), RATE),
    "loud_noise_4s": lambda: (signals.noise(4.0, rms=0.6), RATE),
    "sine_4s": lambda: (signals.sine(4.0, amplitude=0.2), RATE),
    "drums_4s": lambda: (signals.drum_loop(4.0, bpm=120), RATE),
    "drums_4s_mono_44k": lambda: (signals.drum_loop(4.0, bpm=90, sample_rate=44_100)[:1], 44_100),
    "bursts_4s_48k": lambda: (tone_bursts(4.0, 48_000), 48_000),
    "clicks_4s": lambda: (signals.clicks(4.0), RATE),
    "gated_sections_22k": lambda: (gated_sections(6.0, 22_050), 22_050),
    "quiet_chord_4s": lambda: (
        signals.sine(4.0, 220, 0.01) + signals.sine(4.0, 277.2, 0.01),
        RATE,
    ),
    "spiky_sine_4s": lambda: (spiky_sine(4.0), RATE),
    "barely_over_ceiling_4s": lambda: (spiky_sine(4.0, over=1.01), RATE),
    "clipped_sine_4s": lambda: (np.clip(signals.sine(4.0, 200.0, amplitude=3.0), -1, 1), RATE),
    "ebu_3341_case1_48k": lambda: (ebu_sine(4.0, -23.0), 48_000),
    "quarter_rate_sine_48k": lambda: (quarter_rate_sine(4.0), 48_000),
    "silence": lambda: (np.zeros((2, 64_000)), RATE),
    "short": lambda: (signals.noise(0.3, rms=0.3), RATE),
}


# --- loudness core against pyloudnorm ----------------------------------------------------------


@pytest.mark.parametrize("rate", [8_000, 22_050, 32_000, 44_100, 48_000])
@pytest.mark.parametrize("seconds", [0.4, 0.45, 0.75, 3.33, 5.0])
def test_block_loudness_equals_pyloudnorm(rate: int, seconds: float):
    # Lengths around a block and off the 100 ms grid exercise pyloudnorm's block count rounding.
    cases = [
        signals.noise(seconds, sample_rate=rate),
        signals.sine(seconds, 997.0, 0.1, sample_rate=rate, channels=1),
        signals.noise(seconds, rms=0.02, sample_rate=rate, channels=5, seed=2),
        gated_sections(seconds, rate),
    ]
    for audio in cases:
        assert loudness.integrated_loudness(audio, rate) == pytest.approx(
            reference_loudness(audio, rate), abs=1e-6
        )


@pytest.mark.parametrize("gain_db", [-30.0, -6.0, 0.0, 12.0, 40.0])
def test_regating_stored_energies_equals_measuring_scaled_audio(gain_db: float):
    # The gated_sections material has blocks near -75 LUFS and at -30 dB: gains of +12 and
    # +40 dB lift blocks across the absolute gate, -30 dB drops some below it.
    audio = gated_sections(6.0)
    energies = loudness.block_energies(audio, RATE)
    gain = 10 ** (gain_db / 20)
    assert loudness.gated_loudness(energies, gain**2) == pytest.approx(
        reference_loudness(audio * gain, RATE), abs=1e-6
    )


def test_silence_and_short_audio_have_no_loudness_by_one_rule():
    # Under one 400 ms block, under one 3 s short-term window, or gated out entirely: None,
    # from both measures (only the exporter's inner gated_loudness answers -inf for silence).
    silence, short = np.zeros((2, 4 * RATE)), np.ones((2, 12_799)) * 0.1
    below_gate = ebu_sine(4.0, -75.0, RATE)
    for audio in (silence, short, below_gate):
        assert loudness.integrated_loudness(audio, RATE) is None
    for audio in (silence, short[:, : 3 * RATE - 1], below_gate):
        assert loudness.loudness_range(audio, RATE) is None
    assert loudness.gated_loudness(loudness.block_energies(silence, RATE)) == -math.inf


def test_too_many_channels_are_refused_with_the_limit():
    with pytest.raises(ValueError, match=r"6 channels.*at most 5"):
        loudness.block_energies(np.zeros((6, RATE)), RATE)


@pytest.mark.parametrize(("dbfs", "rate"), [(-23.0, 48_000), (-33.0, 48_000), (-23.0, 44_100)])
def test_ebu_3341_sines_read_their_level(dbfs: float, rate: int):
    # EBU Tech 3341 cases 1 and 2: a 1 kHz stereo sine at -23 (-33) dBFS reads -23 (-33) LUFS
    # within +/-0.1 LU.
    assert loudness.integrated_loudness(ebu_sine(5.0, dbfs, rate), rate) == pytest.approx(
        dbfs, abs=0.1
    )


# --- EBU Tech 3341 and 3342 test signals --------------------------------------------------------


def stepped_sine(*steps: tuple[float, float], rate: int = 48_000) -> np.ndarray:
    """A 1 kHz stereo sine, ``(seconds, dBFS)`` after each other: the EBU test-signal shape."""
    return np.concatenate([ebu_sine(seconds, dbfs, rate) for seconds, dbfs in steps], axis=1)


def phased_sine(fraction: float, phase_deg: float, amplitude: float, seconds: float = 2.0):
    """EBU Tech 3341 true-peak cases: a 48 kHz stereo sine at ``fraction`` of the rate,
    ``phase_deg`` off its samples, faded in and out over 10 ms (raised cosine) so the meter
    reads the sine's inter-sample crests, not an abrupt start's ringing (+0.7 dB at 1/8 rate)."""
    n = np.arange(int(seconds * 48_000))
    tone = amplitude * np.sin(2 * np.pi * fraction * n + np.deg2rad(phase_deg))
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(480) / 480)
    tone[:480] *= fade
    tone[-480:] *= fade[::-1]
    return np.repeat(tone[np.newaxis, :], 2, axis=0)


#: EBU Tech 3341 (v4) loudness cases 1-5 with the integrated loudness they must read (+/-0.1 LU).
EBU_3341_LOUDNESS = {
    "3341_case1": (lambda: stepped_sine((20.0, -23.0)), -23.0),
    "3341_case2": (lambda: stepped_sine((20.0, -33.0)), -33.0),
    "3341_case3": (lambda: stepped_sine((10.0, -36.0), (60.0, -23.0), (10.0, -36.0)), -23.0),
    "3341_case4": (
        lambda: stepped_sine(
            (10.0, -72.0), (10.0, -36.0), (60.0, -23.0), (10.0, -36.0), (10.0, -72.0)
        ),
        -23.0,
    ),
    "3341_case5": (lambda: stepped_sine((20.0, -26.0), (20.1, -20.0), (20.0, -26.0)), -23.0),
}

#: EBU Tech 3341 (v4) true-peak cases 15-19 (48 kHz sines between samples) and the true peak
#: they must read, within the meter tolerance of +0.2 / -0.4 dB.
EBU_3341_TRUE_PEAK = {
    "3341_case15": (lambda: phased_sine(1 / 4, 0.0, 0.5), -6.0),
    "3341_case16": (lambda: phased_sine(1 / 4, 45.0, 0.5), -6.0),
    "3341_case17": (lambda: phased_sine(1 / 6, 60.0, 0.5), -6.0),
    "3341_case18": (lambda: phased_sine(1 / 8, 67.5, 0.5), -6.0),
    "3341_case19": (lambda: phased_sine(1 / 4, 45.0, 1.41), 3.0),
}

#: EBU Tech 3342 loudness-range cases 1-4: stepped 1 kHz sines, 20 s per level.
EBU_3342 = {
    "3342_case1": lambda: stepped_sine((20.0, -20.0), (20.0, -30.0)),
    "3342_case2": lambda: stepped_sine((20.0, -20.0), (20.0, -15.0)),
    "3342_case3": lambda: stepped_sine((20.0, -40.0), (20.0, -20.0)),
    "3342_case4": lambda: stepped_sine(
        (20.0, -50.0), (20.0, -35.0), (20.0, -20.0), (20.0, -35.0), (20.0, -50.0)
    ),
}


@pytest.mark.parametrize("name", sorted(EBU_3341_LOUDNESS))
def test_ebu_3341_loudness_cases_read_their_level(name: str):
    make, expected = EBU_3341_LOUDNESS[name]
    audio = make()
    assert loudness.integrated_loudness(audio, 48_000) == pytest.approx(expected, abs=0.1)
    assert loudness.integrated_loudness(audio, 48_000) == pytest.approx(
        reference_loudness(audio, 48_000), abs=1e-6
    )


#: The loudness range EBU Tech 3342 cases 1-4 must read, LU (tolerance +/-1 LU).
EBU_3342_RANGE = {"3342_case1": 10.0, "3342_case2": 5.0, "3342_case3": 20.0, "3342_case4": 15.0}


@pytest.mark.parametrize("name", sorted(EBU_3342))
def test_ebu_3342_loudness_range_cases_read_their_range(name: str):
    assert loudness.loudness_range(EBU_3342[name](), 48_000) == pytest.approx(
        EBU_3342_RANGE[name], abs=1.0
    )


@pytest.mark.parametrize("name", sorted(EBU_3341_TRUE_PEAK))
def test_ebu_3341_true_peak_cases_read_their_level(name: str):
    make, expected = EBU_3341_TRUE_PEAK[name]
    measured = export.true_peak_dbtp(make())
    assert expected - 0.4 <= measured <= expected + 0.2


@pytest.mark.parametrize(
    "name",
    [*sorted(EBU_3342), "3341_case3", "3341_case4", "3341_case5", "3341_case15", "3341_case19"],
)
def test_exports_of_ebu_signals_meet_the_spec_on_the_file(name: str, tmp_path: Path):
    make = {**EBU_3342, **{k: v[0] for k, v in {**EBU_3341_LOUDNESS, **EBU_3341_TRUE_PEAK}.items()}}
    result = export_wav(make[name](), 48_000, tmp_path / "out.wav")
    data, file_rate = soundfile.read(str(result.path), dtype="float64", always_2d=True)
    assert file_rate == export.OUTPUT_SAMPLE_RATE
    assert result.flags == ()
    assert reference_loudness(data.T, file_rate) == pytest.approx(-16.0, abs=0.2)
    assert result.integrated_lufs == pytest.approx(-16.0, abs=0.05)
    assert np.abs(data).max() < 0.99
    assert export.gain_to_db(float(reference_envelope(data.T).max())) <= -1.0


# --- true peak against whole-signal oversampling -----------------------------------------------


def peak_material() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    # Worst case for the tap-sum bound: samples with the signs of one phase's taps, so every
    # tap adds up at one point.
    response = truepeak._impulse_response()[2::4]
    alternating = np.zeros((2, 3_000))
    alternating[:, 1_000 : 1_000 + response.size] = 0.3 * np.sign(response[::-1])
    edge = np.zeros((2, 1_000))
    edge[0, 0], edge[1, -1] = 0.9, -0.95
    return {
        "noise": signals.noise(3.0, rms=0.2),
        "high_sine": signals.sine(2.0, 7_000.0, 0.3),
        "quarter_rate": quarter_rate_sine(1.0),
        "clicks": signals.clicks(4.0),
        "drums": signals.drum_loop(3.0, bpm=150),
        "bursts": tone_bursts(3.0),
        "alternating_taps": alternating,
        "peaks_at_both_ends": edge,
        "one_sample": rng.normal(size=(2, 1)),
        "under_a_block": rng.normal(size=(1, 100)),
        "block_minus_one": rng.normal(size=(2, 255)),
        "block_plus_one": rng.normal(size=(2, 257)),
        "mono_long": signals.drum_loop(5.0, bpm=100)[:1],
    }


@pytest.mark.parametrize("name", sorted(peak_material()))
def test_true_peak_search_equals_whole_signal_oversampling(name: str):
    audio = peak_material()[name]
    reference = reference_envelope(audio)
    np.testing.assert_array_equal(truepeak.envelope(audio), reference)
    assert truepeak.true_peak(audio) == pytest.approx(reference.max(), rel=1e-12)
    assert export.true_peak_dbtp(audio) == pytest.approx(
        export.gain_to_db(float(reference.max())), abs=1e-9
    )
    # The bounds the search prunes with must really bound every block.
    blocks = -(-audio.shape[-1] // truepeak.BLOCK_FRAMES)
    per_block = np.zeros(blocks * truepeak.BLOCK_FRAMES)
    per_block[: reference.size] = reference
    per_block = per_block.reshape(blocks, -1).max(axis=1)
    assert np.all(truepeak.sample_bounds(audio) >= per_block)
    # Any selection of blocks, oversampled piecewise, gives the whole-signal values.
    rng = np.random.default_rng(len(name))
    for _ in range(3):
        selected = rng.random(blocks) < 0.4
        found = truepeak.block_true_peaks(audio, selected)
        np.testing.assert_allclose(found[selected], per_block[selected], rtol=1e-12, atol=0)
        assert np.all(np.isnan(found[~selected]))


def test_step_moment_is_reached_by_the_worst_signal():
    # The step bound (sum * |x[n]| + moment * largest step) must hold for every signal, and is
    # meant to be reached by one. Find each step's coefficient in the value at sample n by
    # oversampling the step alone (whole-signal reference), then build the signal whose steps
    # (all of one size) take those coefficients' signs: its value at n is the moment.
    reach = truepeak.filter_reach()
    frames, n = 8 * reach, 4 * reach

    def unit_step(i: int) -> np.ndarray:
        # A unit step into sample n + i with x[n] held at 0: for i >= 1 the samples from n + i
        # on rise; for i <= 0 those before n + i fall. Cut off beyond the filter's reach.
        shape = np.zeros(frames)
        if i >= 1:
            shape[n + i : n + 2 * reach] = 1.0
        else:
            shape[n - 2 * reach : n + i] = -1.0
        return shape

    def value_at_n(audio: np.ndarray, phase: int) -> float:
        return float(signal.resample_poly(audio[np.newaxis, :], 4, 1, axis=-1)[0, 4 * n + phase])

    reached = []
    for phase in range(4):
        steps = range(-reach, reach + 1)
        signs = [np.sign(value_at_n(unit_step(i), phase)) for i in steps]
        worst = sum(sign * unit_step(i) for sign, i in zip(signs, steps, strict=True))
        reached.append(value_at_n(worst, phase))
    _, moment = truepeak.filter_moments()
    assert max(reached) == pytest.approx(moment, rel=1e-8)


def test_quarter_rate_sine_peaks_3_dB_over_its_samples():
    # EBU Tech 3341 true-peak style: crests halfway between samples, 0 dBTP, samples -3.01 dBFS.
    audio = quarter_rate_sine(1.0)
    assert export.gain_to_db(float(np.abs(audio).max())) == pytest.approx(-3.01, abs=0.01)
    assert export.true_peak_dbtp(audio) == pytest.approx(0.0, abs=0.2)


# --- the exporter against its slow reference ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(MATERIAL))
def test_exporter_equals_the_slow_reference(name: str):
    audio, rate = MATERIAL[name]()
    fast = LoudnessNormalizer().process(audio, rate)
    slow = reference_normalise(audio, rate)
    assert fast.flags == slow.flags
    assert fast.gain_db == pytest.approx(slow.gain_db, abs=1e-6)
    assert fast.limiter_reduction_db == pytest.approx(slow.limiter_reduction_db, abs=1e-6)
    if slow.integrated_lufs is None:
        assert fast.integrated_lufs is None
    else:
        assert fast.integrated_lufs == pytest.approx(slow.integrated_lufs, abs=1e-6)
    assert fast.sample_peak == pytest.approx(slow.sample_peak, abs=1e-9)
    assert fast.true_peak_dbtp == pytest.approx(slow.true_peak_dbtp, abs=1e-6)
    # The same samples, bar a rare rounding tie an LSB apart.
    difference = np.abs(fast.audio.astype(np.float64) - slow.audio) * export.PCM16_FULL_SCALE
    assert difference.max() <= 1.0 + 1e-6
    assert np.count_nonzero(difference > 0.5) <= 1e-4 * difference.size


@pytest.mark.parametrize(
    "name",
    ["noise_16s", "drums_4s_mono_44k", "bursts_4s_48k", "ebu_3341_case1_48k",
     "quarter_rate_sine_48k", "spiky_sine_4s", "clicks_4s"],
)  # fmt: skip
def test_written_file_meets_the_spec_by_the_reference_meters(name: str, tmp_path: Path):
    audio, rate = MATERIAL[name]()
    result = export_wav(audio, rate, tmp_path / "out.wav")
    data, file_rate = soundfile.read(str(result.path), dtype="float64", always_2d=True)
    lufs = reference_loudness(data.T, file_rate)
    true_peak = export.gain_to_db(float(reference_envelope(data.T).max()))
    assert np.abs(data).max() < 0.99
    assert true_peak <= -1.0
    # soundfile reads PCM16 as n / 32768; the exporter's figures describe n / 32767.
    scale_db = export.gain_to_db(export.PCM16_FULL_SCALE / 32_768)
    assert result.integrated_lufs + scale_db == pytest.approx(lufs, abs=1e-6)
    assert result.true_peak_dbtp + scale_db == pytest.approx(true_peak, abs=1e-6)
    if FLAG_LOUDNESS_BELOW_TARGET in result.flags:
        assert lufs < -16.0
    else:
        assert lufs == pytest.approx(-16.0, abs=0.05)


def test_integer_samples_kept_from_normalising_encode_to_the_same_bytes():
    normalised = LoudnessNormalizer().process(signals.drum_loop(2.0, bpm=120), RATE)
    assert normalised.pcm16 is not None
    np.testing.assert_array_equal(normalised.pcm16, export.quantise_pcm16(normalised.audio))
    assert export.encode_wav(normalised.pcm16) == export.encode_wav(normalised.audio)
