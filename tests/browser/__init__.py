"""Browser tests: every page of the built book, as a reader meets it in Chromium."""
