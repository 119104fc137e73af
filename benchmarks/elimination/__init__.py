"""Cross-country elimination: reference tasks and their benchmark."""
