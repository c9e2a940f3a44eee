"""Code that RQ workers run. Never imports Flask."""
