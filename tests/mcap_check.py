#!/usr/bin/env python3
"""Opens a Vigil MCAP recording with the official Python `mcap` reader and decodes every
message with `mcap-protobuf-support` (from the schema embedded in the file). Prints one
JSON object: {"messages": N, "topics": {topic: count}, "payloads": {kind: count}}.
Exits non-zero if any message fails to decode or is not a vigil.v1 envelope."""
import json
import sys

from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory


def main(path: str) -> int:
    topics: dict[str, int] = {}
    payloads: dict[str, int] = {}
    n = 0
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            if schema.name != "vigil.v1.Envelope" or decoded.header.schema_version != 1:
                print(f"message {n} on {channel.topic}: not a vigil.v1 envelope", file=sys.stderr)
                return 1
            kind = decoded.WhichOneof("payload")
            if kind is None:
                print(f"message {n} on {channel.topic}: no payload", file=sys.stderr)
                return 1
            topics[channel.topic] = topics.get(channel.topic, 0) + 1
            payloads[kind] = payloads.get(kind, 0) + 1
            n += 1
    print(json.dumps({"messages": n, "topics": topics, "payloads": payloads}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
