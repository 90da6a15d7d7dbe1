"""Services: each public method is one unit of work and owns its transaction."""
