"""A live RTSP stream on loopback for tests: GStreamer's rtsp-server serving videotestsrc as H.264.

Run with Debian's /usr/bin/python3 (which has python3-gi; scripts/install-system-deps.sh installs it):

    /usr/bin/python3 scripts/rtsp_server.py PORT [PATH] [FPS]

It prints "ready rtsp://127.0.0.1:PORT/PATH" once it listens, then serves until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    port = sys.argv[1]
    path = sys.argv[2] if len(sys.argv) > 2 else "/live"
    fps = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"could not listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    print(f"ready rtsp://127.0.0.1:{port}{path}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
