"""The /background-jobs pages: dashboard, activity charts, job pages, their JSON polls, CSV
export, cancel and retry, filters, time left."""
