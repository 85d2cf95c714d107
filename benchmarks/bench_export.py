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
        """Distance of the result from -16 LUFS, LU (quality, not speed)."""
        result = self.normalizer.process(self.audio, RATE)
        return abs(result.integrated_lufs - self.normalizer.target_lufs)


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
