"""Multi-step work: train a fold from plans, validate it, summarise cross-validation."""
