"""Bulk email of business cards: jobs, rendering, sending, suppression and unsubscribe."""
