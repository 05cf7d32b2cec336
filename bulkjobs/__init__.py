"""The job engine: generic bulk jobs and items, claiming, fencing, rescue, cancel and retry."""
