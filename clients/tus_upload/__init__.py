"""`tus-upload`: a command-line tus client built on tuspy (resume, retries, checksums, parallel parts)."""
