"""The contract's JSON views, composed from what several services own."""

NO_POSTINGS = {"balance": 0, "held": 0}


def account_view(account, balances=NO_POSTINGS):
    """An account (accounts service) with its money (ledger).

    ``available_balance`` is what may be spent now: the posted balance, less the
    money held by uncaptured authorizations, plus the overdraft limit.
    """
    view = dict(account)
    view["balance"] = balances["balance"]
    view["available_balance"] = (
        balances["balance"] - balances["held"] + account["overdraft_limit"])
    return view


def accounts_page(page, balances):
    return {
        "items": [account_view(account, balances[account["id"]]) for account in page["items"]],
        "next_cursor": page["next_cursor"],
    }
