"""The HTTP face: routes per resource, the agent inbox, request limits."""
