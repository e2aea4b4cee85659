"""A real RTSP server for the tests: GStreamer's gst-rtsp-server serving an H.264 .mkv, unchanged.

Run with Debian's Python (python3-gi + gir1.2-gst-rtsp-server-1.0), not the project venv:

    /usr/bin/python3 tests/service/rtsp_server.py --port 8554 --path /clip clip.mkv

The file is not re-encoded (matroskademux ! h264parse ! rtph264pay), so a lossless clip stays
lossless on the wire. Every client gets its own pipeline, starting at the clip's first frame,
played at the clip's frame rate. Prints "ready" once listening.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/clip")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{args.clip}" ! matroskademux ! h264parse '
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"could not listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
