"""Training: the phase loop, schedules, optimizers, checkpoints, augmentation, precision, distribution, bench."""
