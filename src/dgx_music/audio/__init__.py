"""Audio export (loudness normalisation, limiting, PCM16 WAV) and metadata analysis."""
