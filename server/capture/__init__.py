"""Recording real calls (opt-in): the settings, the privacy modes, the rows, the schema with its
migrations, the store's queries and the background writer."""
