"""The harness that the tests, the chaos experiments and the load tests share: a whole
system to run and ways to disturb it, and the bank workload with its checker.

``sandbox`` runs a whole system of its own; ``servers`` stops and starts RabbitMQ,
PostgreSQL and Redis (and finds free ports, waits for conditions); ``process_faults``
kills, pauses and resumes processes; ``proxy`` slows or cuts the network to a dependency;
``bank`` is the bank workload, ``bank_checker`` reads the books after it and
``bank_rules`` judges them.
"""
