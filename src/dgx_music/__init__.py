"""dgx-music: local text-to-music on NVIDIA DGX machines.

Prompt -> MusicGen (Hugging Face transformers) -> 32 kHz stereo PCM16 WAV at -16 LUFS
-> tempo/key/loudness metadata -> a row in the generation history.
"""

__version__ = "0.1.0"
