"""The training side of arctui: data, encoders, prompts, augmentation, fine-tuning, evaluation.

Everything here runs inside the process launched by ``accelerate launch``; it never imports textual
or sqlalchemy. Heavy modules (torch, transformers) are imported only by the modules that need them.
"""
