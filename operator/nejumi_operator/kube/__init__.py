"""Thin Kubernetes API calls (the `kubernetes` client): create-or-get, reads, the status patch."""
