"""Ray Serve extraction service: FastAPI ingress, batched engine replicas, schema sharding (see app.py)."""
