"""Operations: periodic clean-up, recovery of a dead worker's jobs, the scheduler's loop, readiness."""
