"""``modelgate serve --workers N``: N serving processes sharing the ports, under one supervisor."""
