"""arctui: a terminal experiment manager for fine-tuning small language models on ARC tasks."""

__version__ = "0.1.0"
