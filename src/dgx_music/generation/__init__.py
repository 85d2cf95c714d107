"""Text-to-music generation: request validation, the model registry and the backends."""
