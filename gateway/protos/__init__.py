"""Protocol buffer definitions and the Python modules generated from them (`make protos`)."""
