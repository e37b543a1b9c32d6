"""HTTP routes: thin functions that validate, delegate, and shape the response."""
