"""`provision export`: a broker's definitions (live or a file) -> a reviewed topology document.

run.py drives it (source -> document -> celery_app -> emit, then the text is
loaded as `validate` loads it). This package module imports nothing, so that a
pure room of it (document, emit, left_out, accounts...) loads no broker client.
"""
