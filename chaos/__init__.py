"""The chaos harness: experiments that run a load against a sandbox of the system,
inject one fault, heal it and check the books (``python -m chaos``, ``make chaos``).

``faults`` kills, pauses and resumes processes; ``proxy`` slows or cuts the network to a
dependency; ``servers`` stops and starts RabbitMQ, PostgreSQL and Redis; ``sandbox``
runs a whole system of its own; ``experiment`` runs one experiment and its checker;
``experiments`` is the catalogue; ``report`` writes each one's history, summary and chart.
"""
