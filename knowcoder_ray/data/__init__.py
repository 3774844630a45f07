"""Readers of real annotation formats into Records, and the Ray Data corpus pipelines."""
