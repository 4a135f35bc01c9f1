"""The chaos tool: experiments that run a load against a sandbox of the system,
inject one fault, heal it and check the books (``python -m chaos``, ``make chaos``).

``experiment`` runs one experiment and its checker; ``experiments`` is the catalogue;
``report`` writes each one's history, summary and chart. The sandbox, the faults, the
proxy and the bank workload they use are the shared harness's (harness/).
"""
