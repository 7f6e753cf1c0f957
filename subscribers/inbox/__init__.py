"""The in-app inbox: every notification a user receives, kept 90 days, live on ``user:``."""
