"""Fault injection against a running system: the SRE side of the project.

``chaos.faults`` holds the faults themselves (kill -9 a process, pause and
resume one); the bank test of the suite already runs its workload through
them. The experiments that combine a load, a fault and the bank checker into
reports come with the load and chaos harness.
"""
