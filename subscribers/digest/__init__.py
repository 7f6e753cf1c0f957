"""The daily digest email: what happened on a user's projects during their previous local day."""
