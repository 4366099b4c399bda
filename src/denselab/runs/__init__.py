"""Runs: the one engine that trains a list of (variant, seed) runs and records them.

`store` keeps every run in SQLite, `engine` plans runs, names their model files and drives
them to the store, and `executors` say where a run trains: in this process, in local
worker processes, or on a Ray cluster. A study (`explore`) and a search only produce
the list of runs and read the results back.
"""
