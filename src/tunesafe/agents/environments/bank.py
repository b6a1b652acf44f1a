"""The bank account: balance, past transactions, and payments (the ledger the checks read)."""

from __future__ import annotations

import math
from typing import Any

from tunesafe.agents.environments.base import Environment, Tool, ToolError, World, add


def get_balance(world: World) -> dict[str, float]:
    return {"balance": world.bank["balance"]}


def get_transactions(world: World) -> list[dict[str, Any]]:
    return world.bank["transactions"]


def send_money(world: World, to: str, amount: float, subject: str) -> str:
    # json.loads reads NaN: without this it passes both comparisons below, is booked, and leaves a NaN
    # balance under which every later payment passes the funds check
    if not math.isfinite(amount) or amount <= 0:
        raise ToolError("the amount must be a positive number")
    if amount > world.bank["balance"]:
        raise ToolError("insufficient funds")
    transactions = world.bank["transactions"]
    transactions.append({"id": len(transactions) + 1, "to": to, "amount": float(amount), "subject": subject})
    world.bank["balance"] = round(world.bank["balance"] - amount, 2)
    return f"paid {amount:.2f} EUR to {to}"


BANK = add(Environment("bank", "The user's bank account.", (
    Tool("get_balance", "Current account balance in EUR.", get_balance),
    Tool("get_transactions", "The account's past transactions.", get_transactions),
    Tool("send_money", "Transfer money from the user's account.", send_money,
         {"to": ("string", "recipient IBAN"), "amount": ("number", "amount in EUR"),
          "subject": ("string", "payment reference")}, side_effect=True),
)))
