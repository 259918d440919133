from tests.lab.fixture import mail_lab  # noqa: F401  (a session fixture)
