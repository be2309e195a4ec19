"""`tokenflow bench`: engine overhead and the HTTP cost per request of `tokenflow run`, on this machine.

Every measured program runs in a child process of its own (the simulator too), so the CPU time and
peak RSS read from the OS belong to the thing measured and to nothing else.
"""
