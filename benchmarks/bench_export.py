"""Export: loudness normalisation, limiting, PCM16 encoding and the atomic write."""

from __future__ import annotations

try:
    from dgx_music.audio import export
except ImportError:  # an old commit without the module: asv skips the suite
    export = None

from .common import (
    RATE,
    FastBenchmark,
    durations,
    normalised_clip,
    scratch_dir,
    synth_clip,
    traced_peak_mib,
    track,
)

#: Clip lengths, seconds.
SECONDS = durations([4.0, 16.0], [30.0])


class LoudnessNormalise(FastBenchmark):
    """Resample/stereo mapping, BS.1770-4 loudness passes and the look-ahead limiter."""

    params = [SECONDS]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if export is None:
            raise NotImplementedError("dgx_music.audio.export is missing")
        self.audio = synth_clip(seconds)
        self.normalizer = export.LoudnessNormalizer()

    def time_normalise(self, seconds: float) -> None:
        self.normalizer.process(self.audio, RATE)

    @track("MiB")
    def track_normalise_peak_mib(self, seconds: float) -> float:
        """Peak memory the normalisation allocates, MiB (tracemalloc; the stage's own arrays)."""
        return traced_peak_mib(lambda: self.normalizer.process(self.audio, RATE))

    @track("LU")
    def track_loudness_error(self, seconds: float) -> float:
        """Distance of the result from -16 LUFS, LU (quality, not speed), never below
        :data:`LOUDNESS_ERROR_FLOOR`: under it the distance is rounding, and the ratio of two
        commits' rounding (0.76 and 1.45 micro-LU read as 1.91x) is no regression."""
        result = self.normalizer.process(self.audio, RATE)
        error = abs(result.integrated_lufs - self.normalizer.target_lufs)
        return max(error, LOUDNESS_ERROR_FLOOR)


#: Resolution of the loudness-error figure, LU: a thousandth of an LU, fifty times finer than the
#: exporter's own tolerance (0.05 LU) and far above float64 rounding of the measurement.
LOUDNESS_ERROR_FLOOR = 1e-3


class WriteWav(FastBenchmark):
    """PCM16 encoding plus temp file, fsync and rename."""

    params = [SECONDS]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if export is None:
            raise NotImplementedError("dgx_music.audio.export is missing")
        self.audio = normalised_clip(seconds)
        self.directory = scratch_dir()

    def time_write_atomic(self, seconds: float) -> None:
        export.write_wav_atomic(self.audio, self.directory / "bench.wav")


class ExportWav(FastBenchmark):
    """The whole export of one generated clip: normalise, limit, encode, write."""

    params = [SECONDS]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if export is None:
            raise NotImplementedError("dgx_music.audio.export is missing")
        self.audio = synth_clip(seconds)
        self.directory = scratch_dir()

    def time_export(self, seconds: float) -> None:
        export.export_wav(self.audio, RATE, self.directory / "bench.wav")

    @track("MiB")
    def track_export_peak_mib(self, seconds: float) -> float:
        """Peak memory the whole export allocates, MiB (tracemalloc; the stage's own arrays)."""
        return traced_peak_mib(
            lambda: export.export_wav(self.audio, RATE, self.directory / "bench.wav")
        )
