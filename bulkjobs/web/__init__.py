"""The /background-jobs pages: dashboard, job pages, JSON polls, charts, filters, time left."""
