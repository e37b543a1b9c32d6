"""Where a reply comes from: the responder interface, the offline `echo` responder, and the
routing that picks a responder (and model) per request."""
