"""Metadata: loudness figures, tempo and key of a normalised clip (librosa warmed up first)."""

from __future__ import annotations

try:
    from dgx_music.audio import metadata
except ImportError:  # an old commit without the module: asv skips the suite
    metadata = None

from . import real_music
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

    # 30 s: the length of a real-music clip and of a default MusicGen window (issue 18's target).
    params = [durations([4.0, 16.0, 30.0], [])]
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


class RealMusicAccuracy:
    """Share of missed keys and tempos (%) on the fixed 24-clip subset of the real-music corpus
    (benchmarks/real_music.py). Misses, not hits: asv reads a rise as a regression, so a change
    that costs accuracy shows in the history, and in the gate's table, as a slowdown does. The
    tempo counts within 2 %, or half or double (benchmarks/analysis_accuracy).
    """

    # Building the subset the first time renders 24 clips with FluidSynth (about a minute).
    timeout = 900

    def setup_cache(self) -> dict[str, object]:
        """The subset's readings by this commit's analysis, or why there are none."""
        if metadata is None:
            return {"skip": "dgx_music.audio.metadata is missing"}
        try:
            clips = real_music.build(only_subset=True)
        except RuntimeError as error:  # FluidSynth, its soundfont or music21 missing
            return {"skip": str(error)}
        import soundfile as sf

        from .analysis_accuracy import tempo_is_right

        metadata.warm_up()
        # Not analysis_accuracy.read(): it needs metadata.estimates, which older commits of the
        # history lack; tempo_and_key reads the same tempo and key back to the first analysis.
        tempo_missed, key_missed = 0, 0
        for clip in clips:
            audio, rate = sf.read(clip.path, dtype="float32", always_2d=True)
            found_tempo, _, found_key, _ = metadata.tempo_and_key(audio.T, rate)
            tempo_missed += not tempo_is_right(found_tempo, clip.bpm)
            key_missed += found_key != clip.key
        return {
            "tempo": 100.0 * tempo_missed / len(clips),
            "key": 100.0 * key_missed / len(clips),
        }

    def setup(self, readings: dict[str, object]) -> None:
        if "skip" in readings:
            raise NotImplementedError(readings["skip"])

    @track("%")
    def track_key_missed_pct(self, readings: dict[str, float]) -> float:
        """Clips of the subset whose key is not exactly right, percent."""
        return readings["key"]

    @track("%")
    def track_tempo_missed_pct(self, readings: dict[str, float]) -> float:
        """Clips of the subset whose tempo is wrong (beyond 2 %, half or double), percent."""
        return readings["tempo"]
