"""An order service built on the rmqkit starter: the example that shows what a message queue buys
a service (decoupling, peak shaving, fan-out, idempotency, transactional messages, ordered and
delayed delivery). Run it with `make demo` or `python -m order_service.demo` (examples/ on the
path); `README.md` beside this file explains what each part shows.
"""
