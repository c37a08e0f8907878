"""Draws what Foxglove's Image and 3D panels would show of a recording, from its
`foxglove.*` channels alone, decoded with Foxglove's own protobuf classes: the camera
with its ground-truth boxes, and a bird's-eye view of the lidar point cloud with the
ground-truth cubes and the vehicle's tracks, and the log lines up to that moment.

    render_viewer.py RECORDING OUT.png

The moment drawn is the camera image nearest the first braking recommendation (else the
image with the most boxes). Prints a JSON summary of what was drawn.
"""

import io
import json
import math
import struct
import sys

from mcap.reader import make_reader
from PIL import Image, ImageDraw
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from foxglove_schemas_protobuf.Log_pb2 import Log
from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud
from foxglove_schemas_protobuf.SceneUpdate_pb2 import SceneUpdate

CLASSES = {
    "foxglove.CompressedImage": CompressedImage,
    "foxglove.ImageAnnotations": ImageAnnotations,
    "foxglove.Log": Log,
    "foxglove.PointCloud": PointCloud,
    "foxglove.SceneUpdate": SceneUpdate,
}
BEV = 640  # pixels
RANGE = (-5.0, 45.0)  # metres ahead of the ego drawn, bottom to top
SCALE = BEV / (RANGE[1] - RANGE[0])


def read(path):
    by = {k: [] for k in CLASSES}
    with open(path, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages():
            if schema is not None and schema.name in CLASSES:
                m = CLASSES[schema.name]()
                m.ParseFromString(message.data)
                by[schema.name].append((message.log_time, channel.topic, m))
    return by


def nearest(items, t, within=None):
    best = min(items, key=lambda i: abs(i[0] - t), default=None)
    if best is None or (within is not None and abs(best[0] - t) > within):
        return None
    return best


def rgb(c, alpha=255):
    return (int(c.r * 255), int(c.g * 255), int(c.b * 255), alpha)


def rotate(q, v):
    """Rotates v by the unit quaternion q (x, y, z, w)."""
    x, y, z, w = q.x, q.y, q.z, q.w
    vx, vy, vz = v
    tx, ty, tz = 2 * (y * vz - z * vy), 2 * (z * vx - x * vz), 2 * (x * vy - y * vx)
    return (vx + w * tx + y * tz - z * ty, vy + w * ty + z * tx - x * tz, vz + w * tz + x * ty - y * tx)


def bev_xy(x, y):
    """Ego frame (x forward, y left) to pixels (forward up)."""
    return (BEV / 2 - y * SCALE, BEV - (x - RANGE[0]) * SCALE)


def draw_camera(image, annotations):
    img = Image.open(io.BytesIO(image.data)).convert("RGBA")
    overlay = ImageDraw.Draw(img)
    boxes = 0
    for p in annotations.points if annotations else []:
        pts = [(q.x, q.y) for q in p.points]
        overlay.line(pts + pts[:1], fill=rgb(p.outline_color), width=max(int(p.thickness), 2))
        boxes += 1
    return img, boxes


def draw_bev(cloud, scenes):
    img = Image.new("RGBA", (BEV, BEV), (18, 20, 26, 255))
    d = ImageDraw.Draw(img, "RGBA")
    for r in range(10, 70, 10):  # range rings, 10 m apart
        x0, y0 = bev_xy(r, r)
        x1, y1 = bev_xy(-r, -r)
        d.ellipse((x0, y0, x1, y1), outline=(60, 64, 72, 255))
    points = 0
    if cloud is not None:
        stride, data, pose = cloud.point_stride, cloud.data, cloud.pose
        for i in range(0, len(data) - stride + 1, stride):
            x, y, z = struct.unpack_from("<fff", data, i)
            x, y, z = rotate(pose.orientation, (x, y, z))
            x, y, z = x + pose.position.x, y + pose.position.y, z + pose.position.z
            if RANGE[0] <= x <= RANGE[1] and abs(y) <= BEV / SCALE / 2:
                h = max(0.0, min(1.0, (z + 0.5) / 3.0))
                d.point(bev_xy(x, y), fill=(int(80 + 175 * h), int(200 - 80 * h), int(255 - 200 * h), 255))
                points += 1
    cubes = {"truth": 0, "track": 0}
    for scene in scenes:
        for e in scene.entities:
            kind = "track" if e.id.startswith("track-") else "truth"
            for c in e.cubes:
                yaw = 2 * math.atan2(c.pose.orientation.z, c.pose.orientation.w)
                cx, cy, hl, hw = c.pose.position.x, c.pose.position.y, c.size.x / 2, c.size.y / 2
                corners = []
                for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
                    lx, ly = sx * hl, sy * hw
                    corners.append(bev_xy(cx + lx * math.cos(yaw) - ly * math.sin(yaw), cy + lx * math.sin(yaw) + ly * math.cos(yaw)))
                colour = rgb(c.color, 255 if kind == "track" else 140)
                d.polygon(corners, outline=colour, fill=None if kind == "track" else colour, width=2)
                cubes[kind] += 1
            for t in e.texts:
                x, y = bev_xy(t.pose.position.x, t.pose.position.y)
                d.text((x + 8, y + (14 if kind == "track" else -14)), t.text, fill=(255, 230, 80, 255) if kind == "track" else (255, 255, 255, 255))
    ex, ey = bev_xy(0, 0)
    d.polygon([(ex, ey - 12), (ex - 6, ey + 6), (ex + 6, ey + 6)], fill=(255, 255, 255, 255))
    return img, points, cubes


def main(args):
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    by = read(args[0])
    images = by["foxglove.CompressedImage"]
    if not images:
        print(f"{args[0]}: no foxglove.CompressedImage channel to draw", file=sys.stderr)
        return 1
    brakes = [l for l in by["foxglove.Log"] if "BRAKE" in l[2].message]
    notes = by["foxglove.ImageAnnotations"]
    if brakes:
        moment = nearest(images, brakes[0][0])
    else:
        moment = max(images, key=lambda i: len((nearest(notes, i[0], 100_000_000) or (0, 0, ImageAnnotations()))[2].points))
    t = moment[0]
    note = nearest(notes, t, 100_000_000)
    camera, boxes = draw_camera(moment[2], note[2] if note else None)
    cloud = nearest(by["foxglove.PointCloud"], t, 200_000_000)
    recent = [s for s in by["foxglove.SceneUpdate"] if 0 <= t - s[0] <= 300_000_000 or (s[1].endswith("/tracks") and 0 <= t - s[0] <= 500_000_000)]
    latest = {}
    for s in recent:  # the newest update per entity, as the panel shows
        for e in s[2].entities:
            latest[e.id] = (s[0], e)
    scene = SceneUpdate(entities=[e for _, e in latest.values()])
    bev, points, cubes = draw_bev(cloud[2] if cloud else None, [scene])
    lines = [f"{(l[0] - images[0][0]) / 1e9:6.2f} s  {l[2].message}" for l in by["foxglove.Log"] if l[0] <= t][-6:]
    height = max(camera.height, BEV) + 24 + 16 * len(lines) + 8
    page = Image.new("RGBA", (camera.width + BEV + 24, height), (10, 12, 16, 255))
    page.paste(camera, (8, 24))
    page.paste(bev, (camera.width + 16, 24))
    d = ImageDraw.Draw(page)
    d.text((8, 6), f"{moment[1]}  t={(t - images[0][0]) / 1e9:.2f} s  ({boxes} boxes)", fill=(230, 230, 230, 255))
    d.text((camera.width + 16, 6), f"{cloud[1] if cloud else 'no lidar'}: {points} points, {cubes['truth']} truth, {cubes['track']} tracks", fill=(230, 230, 230, 255))
    for i, line in enumerate(lines):
        d.text((8, max(camera.height, BEV) + 32 + 16 * i), line, fill=(255, 200, 120, 255))
    page.convert("RGB").save(args[1])
    print(json.dumps({"time_s": (t - images[0][0]) / 1e9, "boxes": boxes, "points": points, "cubes": cubes, "logs": len(lines)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
