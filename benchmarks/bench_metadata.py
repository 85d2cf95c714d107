"""Metadata: loudness figures, tempo and key of a normalised clip (librosa warmed up first)."""

from __future__ import annotations

try:
    from dgx_music.audio import metadata
except ImportError:  # an old commit without the module: asv skips the suite
    metadata = None

from .common import (
    RATE,
    Benchmark,
    durations,
    normalised_clip,
    traced_peak_mib,
    track,
    warm_metadata,
)


class AnalyzeClip(Benchmark):
    """Everything ``analyze`` reports for one clip, as the pipeline calls it."""

    params = [durations([4.0, 16.0], [30.0])]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if metadata is None:
            raise NotImplementedError("dgx_music.audio.metadata is missing")
        warm_metadata()
        self.audio = normalised_clip(seconds)

    def time_analyze(self, seconds: float) -> None:
        metadata.analyze(self.audio, RATE)

    @track("MiB")
    def track_analyze_peak_mib(self, seconds: float) -> float:
        """Peak memory one analysis allocates, MiB (tracemalloc; librosa works in numpy)."""
        return traced_peak_mib(lambda: metadata.analyze(self.audio, RATE))

    @track("%")
    def track_tempo_error(self, seconds: float) -> float:
        """Distance of the detected tempo from the synth's 124 BPM, percent (quality)."""
        tempo = metadata.analyze(self.audio, RATE).tempo_bpm
        candidates = [tempo, tempo * 2, tempo / 2] if tempo else [0.0]
        return min(abs(c - 124.0) for c in candidates) / 124.0 * 100
