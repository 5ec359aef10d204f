"""What a run stands on: the one client, model serving, data fetching."""
