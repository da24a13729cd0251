"""The SSH login client: one reviewed unit (see README.md in this folder)."""
