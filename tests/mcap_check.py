#!/usr/bin/env python3
"""Opens a Vigil recording with the official Python `mcap` reader and decodes every
message with `mcap-protobuf-support` (from the schema embedded in the file). Takes files
or directories of parts (a split recording), read in order. Prints one JSON object:
{"files": N, "messages": N, "topics": {topic: count}, "payloads": {kind: count},
"camera_encodings": {encoding: count}, "compression": [chunk compressions]}.
Exits non-zero if any message fails to decode or is not a vigil.v1 envelope."""
import json
import os
import sys

from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory


def files_of(args: list[str]) -> list[str]:
    out: list[str] = []
    for a in args:
        if os.path.isdir(a):
            out += sorted(os.path.join(a, f) for f in os.listdir(a) if f.endswith(".mcap"))
        else:
            out.append(a)
    return out


def main(args: list[str]) -> int:
    topics: dict[str, int] = {}
    payloads: dict[str, int] = {}
    encodings: dict[str, int] = {}
    compression: set[str] = set()
    n = 0
    files = files_of(args)
    for path in files:
        with open(path, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            summary = reader.get_summary()
            for ci in summary.chunk_indexes if summary else []:
                compression.add(ci.compression or "none")
            for schema, channel, message, decoded in reader.iter_decoded_messages():
                if schema.name != "vigil.v1.Envelope" or decoded.header.schema_version != 1:
                    print(f"{path}: message {n} on {channel.topic}: not a vigil.v1 envelope", file=sys.stderr)
                    return 1
                kind = decoded.WhichOneof("payload")
                if kind is None:
                    print(f"{path}: message {n} on {channel.topic}: no payload", file=sys.stderr)
                    return 1
                if kind == "camera":
                    name = type(decoded.camera).DESCRIPTOR.fields_by_name["encoding"].enum_type.values_by_number[
                        decoded.camera.encoding
                    ].name
                    encodings[name] = encodings.get(name, 0) + 1
                topics[channel.topic] = topics.get(channel.topic, 0) + 1
                payloads[kind] = payloads.get(kind, 0) + 1
                n += 1
    print(
        json.dumps(
            {
                "files": len(files),
                "messages": n,
                "topics": topics,
                "payloads": payloads,
                "camera_encodings": encodings,
                "compression": sorted(compression),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
