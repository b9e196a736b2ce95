#!/usr/bin/env python3
"""Forex tick producer (kafka-python).

Stands in for the curriculum's Python forex generator, to show that an
unchanged kafka-python producer works against our broker. Wire format:

  key   = json.dumps("PAIR-YYYY-MM-DD HH:MM")   (the key bytes include the quotes)
  value = json.dumps({"timestamp", "pair_name", "bid_price", "ask_price", "spread"})

Each simulated step (500 +/- 100 ms, whole milliseconds) emits one MRVZAR and
one WAKMRV tick sharing a timestamp; the first step lands at start + step.
Draw order per step: step offset, then (bid, spread) for MRVZAR, then for WAKMRV.
The default seed, 948342783, is the one the curriculum's generator ends up using,
so the default run should reproduce its stream value for value.

Usage: KAFKA_BROKERS=host:port TICK_TOPIC=tick-data forex_producer.py [--ticks N] [--seed S]
"""
import argparse
import json
import os
import random
from datetime import datetime, timedelta

from kafka import KafkaProducer

PAIRS = ("MRVZAR", "WAKMRV")
START = datetime(2024, 1, 1, 0, 0, 0)


def ticks(rng, count):
    """Yield (key, value) dicts until `count` ticks have been produced."""
    ts = START
    sent = 0
    while sent < count:
        ts += timedelta(milliseconds=500 + rng.randint(-100, 100))
        stamp = ts.strftime("%Y-%m-%d %H:%M:%S.%f")
        for pair in PAIRS:
            if sent == count:
                return
            bid = round(rng.uniform(1.0, 2.0), 4)
            spread = round(rng.uniform(0.01, 0.05), 4)
            value = {
                "timestamp": stamp,
                "pair_name": pair,
                "bid_price": bid,
                "ask_price": round(bid + spread, 4),
                "spread": spread,
            }
            yield f"{pair}-{stamp[:16]}", value
            sent += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=691_200, help="messages to send (default 691200 = 48 h)")
    ap.add_argument("--seed", type=int, default=948342783, help="random.Random seed")
    args = ap.parse_args()

    brokers = os.environ.get("KAFKA_BROKERS", "localhost:19092").split(",")
    topic = os.environ.get("TICK_TOPIC", "tick-data")
    producer = KafkaProducer(
        bootstrap_servers=brokers,
        key_serializer=lambda k: json.dumps(k).encode("utf-8"),
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
    )

    failures = []
    sent = 0
    for key, value in ticks(random.Random(args.seed), args.ticks):
        producer.send(topic, key=key, value=value).add_errback(failures.append)
        sent += 1
        if sent % 200 == 0:  # bounded batches, like the original's flush every 100 steps
            producer.flush()
    producer.flush()
    producer.close()
    if failures:
        raise SystemExit(f"{len(failures)} sends failed, first: {failures[0]!r}")
    print(f"sent {sent} ticks", flush=True)


if __name__ == "__main__":
    main()
