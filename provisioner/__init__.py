"""provisioner: infrastructure-as-code for the RabbitMQ topologies Celery runs on."""

__version__ = "0.1.0"  # the one place the version is written; pyproject.toml reads it from here
