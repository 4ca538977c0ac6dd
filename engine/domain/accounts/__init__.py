"""Accounts: pure functions over account updates and lead signals (no I/O, no store).

`profile` folds an account's updates, `matching` decides each lead's account, `scoring`
scores an account and decides MQA. Same inputs, same outputs, whatever the arrival order.
"""
