"""Row operations on a caller's session; they never commit."""
