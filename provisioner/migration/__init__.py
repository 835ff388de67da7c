"""Replacing a queue without losing a message: ``steps`` plans (pure), ``amqp`` carries the steps out over pika.

Importing this package loads neither: the pure rooms import ``steps`` alone.
"""
