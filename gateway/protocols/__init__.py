"""Protocol adapters: thin translations between wire formats and the core data plane."""
