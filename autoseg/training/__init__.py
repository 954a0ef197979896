"""Training: splits, patch sampling, augmentation, losses, schedules, the Trainer loop."""
