"""The job queue, the one end-to-end pipeline and the workers that run it."""
