"""The prefork pool: a supervising master and the children it forks.

The pool knows processes, signals and the scoreboard; it knows nothing of brokers or tasks.
What a child runs and what the master does when a child exits are given to it by the worker
layer (`ChildProgram`, `Supervision`).
"""
