#!/bin/sh
# The demo camera's publisher, run by MediaMTX (docker/mediamtx.yml, runOnInit): an endless 10 fps
# H.264 stream, ffmpeg's moving test pattern by default, or DEMO_CLIP (a mounted video) looped.
#   sh docker/demo-camera.sh [OUTPUT]    # default rtsp://localhost:$RTSP_PORT/$MTX_PATH
# DEMO_FRAMES=N stops after N frames (the tests write a short file with it).
set -eu
out="${1:-rtsp://localhost:${RTSP_PORT:-8554}/${MTX_PATH:-demo}}"
if [ -n "${DEMO_CLIP:-}" ]; then
  set -- -re -stream_loop -1 -i "$DEMO_CLIP"
else
  set -- -re -f lavfi -i "testsrc2=size=320x240:rate=10"
fi
[ -n "${DEMO_FRAMES:-}" ] && set -- "$@" -frames:v "$DEMO_FRAMES"
set -- "$@" -an -r 10 -c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p -g 10
case "$out" in
  rtsp://*) set -- "$@" -f rtsp -rtsp_transport tcp ;;
esac
exec ffmpeg -hide_banner -loglevel warning -y "$@" "$out"
