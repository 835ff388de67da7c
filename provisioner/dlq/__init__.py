"""Dead-letter queues you can work with: list, show, replay, purge.

``letters.py`` is pure (which queues are dead-letter queues, what a message
says, where it goes back); ``broker.py`` reads and moves messages over AMQP.
"""
