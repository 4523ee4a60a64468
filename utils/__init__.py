"""Shared pieces of the entry scripts: arguments, schedules, optimizer, losses, EMA, checkpoints."""
