"""`forkq demo`: a worker over an app that preloads a table, and what fork shared."""
