"""pytest setup: the test tiers.

`make test` runs everything. `make test-fast` leaves out tests marked `slow` (seconds of
training or compiling each) and `subprocess` (they start train.py or worker processes).
"""


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes seconds of training or compiling')
  config.addinivalue_line('markers', 'subprocess: starts train.py or other processes')
