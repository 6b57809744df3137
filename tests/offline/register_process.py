"""One register as a real process, driven by the acceptance test (it uses the SDK only).

    python -m tests.offline.register_process PHASE CONFIG.json

``prepare``: download the package and fetch the allowances (connected).
``record``: record the planned sales while the server is unreachable (all offline).
``sync``: replay the queue until it is empty, however often the connection breaks.
Every phase can be killed and run again: the queue is the register's memory.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from patron.pos_client import OfflineRefused, Register


def plan(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The register's sales: the same for the same seed, whatever the world's ids."""
    rng = random.Random(config["seed"])
    sales: list[dict[str, Any]] = []
    catalogue = [("CF-1", "Coffee", "coffee", 350), ("BR-1", "Bread", "bakery", 1234),
                 ("TB-1", "Cigarettes", "tobacco", 600), ("MK-1", "Milk", None, 199),
                 ("TV-1", "Radio", "electronics", 4999)]
    for number in range(config["count"]):
        lines = []
        for index in range(rng.randint(1, 4)):
            sku, name, category, price = rng.choice(catalogue)
            line: dict[str, Any] = {"sku": f"{sku}-{index}", "name": name,
                                    "quantity": rng.randint(1, 3), "unit_price": price}
            if category:
                line["category"] = category
            lines.append(line)
        roll = rng.random()
        sale: dict[str, Any] = {"lines": lines}
        if number == config.get("voucher_at"):
            # The shared code: the same basket at both registers that use it.
            sale = {"lines": [{"sku": "GIFT", "name": "Gift box", "quantity": 1,
                               "unit_price": 2000}],
                    "member": "shared", "vouchers": [config["shared_code"]]}
        elif roll < 0.25:
            pass
        elif roll < 0.75:
            sale["member"] = f"plain{rng.randrange(len(config['plain']))}"
        else:
            # Within the allowance and the basket, so that every sale is recorded.
            subtotal = sum(line["quantity"] * line["unit_price"] for line in lines)
            sale["member"] = "burner"
            sale["points_to_burn"] = min(rng.choice([100, 150, 200, 300]), subtotal)
            if sale["points_to_burn"] < 100:
                sale["points_to_burn"] = 0
        sales.append(sale)
    return sales


def member_of(config: dict[str, Any], role: str) -> dict[str, Any]:
    if role == "shared":
        return {"member_id": config["shared"]["id"]}
    if role == "burner":
        return {"barcode": config["burner"]["member_number"]}
    return {"barcode": config["plain"][int(role[5:])]["member_number"]}


def main(phase: str, config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    register = Register(config["url"], config["key"], config["queue"], timeout=30.0,
                        receipt_prefix=config["prefix"], batch_size=config["batch_size"],
                        probe_interval=3600)
    out = Path(config["queue"] + f".{phase}.json")
    if phase == "prepare":
        register.refresh_package()
        register.prepare({"member_id": config["burner"]["id"]})
        register.prepare({"member_id": config["shared"]["id"]})
        out.write_text(json.dumps({"ok": True}))
    elif phase == "record":
        recorded: list[str] = []
        refused: list[str] = []
        for index, sale in enumerate(plan(config)):
            member = member_of(config, sale["member"]) if "member" in sale else None
            try:
                result = register.checkout(
                    sale["lines"], member=member,
                    points_to_burn=sale.get("points_to_burn", 0),
                    vouchers=sale.get("vouchers", ()), receipt_no=f"{config['prefix']}{index:05d}")
            except OfflineRefused as exc:
                refused.append(f"{index}:{exc.code}")
                continue
            if result.mode != "offline":
                raise SystemExit(f"sale {index} went online: the server was reachable")
            recorded.append(result.receipt_no)
        out.write_text(json.dumps({"recorded": recorded, "refused": refused}))
    elif phase == "sync":
        deadline = time.monotonic() + 300
        rounds = 0
        while register.queue.size():
            rounds += 1
            register.sync()
            if register.queue.size():
                if time.monotonic() > deadline:
                    raise SystemExit("the queue did not drain")
                time.sleep(0.05)
        out.write_text(json.dumps({"rounds": rounds, "results": register.queue.results()}))
    register.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
