"""Document analysis: recognise an upload, extract its text (in a child process), chunk it."""
