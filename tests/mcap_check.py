#!/usr/bin/env python3
"""Opens a Vigil recording with the official Python `mcap` reader and decodes every
message with `mcap-protobuf-support` (from the schema embedded in the file). Takes files
or directories of parts (a split recording), read in order. Prints one JSON object:
{"files": N, "messages": N, "topics": {topic: count}, "payloads": {kind: count},
"camera_encodings": {encoding: count}, "compression": [chunk compressions],
"viewer": {schema: {...}}}. The `foxglove.*` channels a recording carries for viewers
are parsed with Foxglove's own classes (`foxglove-schemas-protobuf`) and summed up under
"viewer"; they are not counted in "messages".
Exits non-zero if any message fails to decode or is neither a vigil.v1 envelope nor a
Foxglove schema."""
import json
import os
import sys

from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from foxglove_schemas_protobuf.CameraCalibration_pb2 import CameraCalibration
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.FrameTransforms_pb2 import FrameTransforms
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from foxglove_schemas_protobuf.Log_pb2 import Log
from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud
from foxglove_schemas_protobuf.SceneUpdate_pb2 import SceneUpdate

FOXGLOVE = {
    "foxglove.PointCloud": PointCloud,
    "foxglove.CompressedImage": CompressedImage,
    "foxglove.ImageAnnotations": ImageAnnotations,
    "foxglove.SceneUpdate": SceneUpdate,
    "foxglove.Log": Log,
    "foxglove.FrameTransforms": FrameTransforms,
    "foxglove.CameraCalibration": CameraCalibration,
}


def viewer_message(viewer: dict, schema: str, data: bytes) -> None:
    """Parses one foxglove.* message with Foxglove's class and notes what it holds."""
    m = FOXGLOVE[schema]()
    m.ParseFromString(data)
    v = viewer.setdefault(schema, {"messages": 0})
    v["messages"] += 1
    if schema == "foxglove.PointCloud":
        v["points"] = v.get("points", 0) + len(m.data) // max(m.point_stride, 1)
        v["fields"] = [f.name for f in m.fields]
        v["frame_id"] = m.frame_id
    elif schema == "foxglove.CompressedImage":
        v["format"] = m.format
        v["jpeg"] = v.get("jpeg", 0) + int(m.data[:2] == b"\xff\xd8")
    elif schema == "foxglove.SceneUpdate":
        v["cubes"] = v.get("cubes", 0) + sum(len(e.cubes) for e in m.entities)
        v["texts"] = sorted(set(v.get("texts", [])) | {t.text.split(" #")[0] for e in m.entities for t in e.texts})
    elif schema == "foxglove.ImageAnnotations":
        v["boxes"] = v.get("boxes", 0) + len(m.points)
    elif schema == "foxglove.Log":
        v.setdefault("first", m.message)
        v["levels"] = sorted(set(v.get("levels", [])) | {Log.Level.Name(m.level)})
    elif schema == "foxglove.FrameTransforms":
        v["frames"] = sorted(set(v.get("frames", [])) | {f"{t.parent_frame_id}>{t.child_frame_id}" for t in m.transforms})
    elif schema == "foxglove.CameraCalibration":
        v["size"] = [m.width, m.height]


def json_message(viewer: dict, schema: str, data: bytes) -> None:
    """A JSON viewer channel (plots): counted, and its keys noted."""
    v = viewer.setdefault(schema, {"messages": 0})
    v["messages"] += 1
    v["keys"] = sorted(set(v.get("keys", [])) | set(json.loads(data)))


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
    viewer: dict = {}
    viewer_topics: set[str] = set()
    n = 0
    files = files_of(args)
    for path in files:
        with open(path, "rb") as f:
            reader = make_reader(f)
            factory, decoders = DecoderFactory(), {}
            summary = reader.get_summary()
            for ci in summary.chunk_indexes if summary else []:
                compression.add(ci.compression or "none")
            for schema, channel, message in reader.iter_messages():
                if schema is not None and schema.name in FOXGLOVE:
                    viewer_message(viewer, schema.name, message.data)
                    viewer_topics.add(channel.topic)
                    continue
                if channel.message_encoding == "json":
                    viewer_topics.add(channel.topic)
                    json_message(viewer, schema.name if schema else channel.topic, message.data)
                    continue
                if channel.id not in decoders:
                    decoders[channel.id] = factory.decoder_for(channel.message_encoding, schema)
                decoded = decoders[channel.id](message.data)
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
                "viewer": viewer,
                "viewer_topics": sorted(viewer_topics),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
