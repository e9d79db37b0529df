#!/usr/bin/env bash
# Runs a command against a private, headless PulseAudio server with a null sink, so earshot can
# capture "live" audio on a machine without a sound card (demos, manual tests, CI).
#
#   scripts/pulse-env.sh [--play FILE.wav]... [--tone HZ] -- COMMAND [ARGS...]
#
# Inside COMMAND, cpal's ALSA device `alsa:pulse` (or `alsa:default`) records whatever is played
# into the sink: each --play WAV (looped) and/or a --tone sine (-6 dBFS). More can be played from
# another shell with the printed PULSE_SERVER: `PULSE_SERVER=... paplay --device=earshot FILE`.
# Needs: apt-get install -y pulseaudio pulseaudio-utils libasound2-plugins sox
# On exit it kills only the processes it started (by PID) and removes its temp dir.
set -euo pipefail

PLAY=() TONE=
while (($#)); do
  case $1 in
    --play) PLAY+=("$(realpath "$2")"); shift 2 ;;
    --tone) TONE=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "usage: $0 [--play FILE.wav]... [--tone HZ] -- COMMAND [ARGS...]" >&2; exit 2; }
for bin in pulseaudio pactl paplay parec; do
  command -v "$bin" >/dev/null || {
    echo "$bin not found: apt-get install -y pulseaudio pulseaudio-utils libasound2-plugins sox" >&2
    exit 2
  }
done

RUN=$(mktemp -d "${TMPDIR:-/tmp}/earshot-pulse.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  # The server first: its clients (paplay loops, parec) then end by themselves and are reaped.
  ((${#PIDS[@]})) && kill "${PIDS[0]}" 2>/dev/null || true
  sleep 0.3
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN/xdg" "$RUN/home/.config/pulse" && chmod 700 "$RUN/xdg"
export XDG_RUNTIME_DIR=$RUN/xdg
export PULSE_SERVER=unix:$RUN/native
export PULSE_COOKIE=$RUN/home/.config/pulse/cookie
export PULSE_CLIENTCONFIG=$RUN/client.conf
# No shared memory: with it, a dying server can hang clients inside libpulse.
printf 'autospawn = no\nenable-shm = no\n' >"$PULSE_CLIENTCONFIG"
cat >"$RUN/default.pa" <<EOF
load-module module-native-protocol-unix auth-anonymous=1 socket=$RUN/native
load-module module-null-sink sink_name=earshot rate=48000 channels=2
set-default-sink earshot
set-default-source earshot.monitor
EOF
HOME=$RUN/home env -u DBUS_SESSION_BUS_ADDRESS pulseaudio -n -F "$RUN/default.pa" \
  --daemonize=no --exit-idle-time=-1 --use-pid-file=no --disable-shm=yes \
  >"$RUN/pulse.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 200); do pactl info >/dev/null 2>&1 && break; sleep 0.05; done
pactl info >/dev/null 2>&1 || { cat "$RUN/pulse.log" >&2; exit 1; }
# The null sink renders in blocks of up to 2 s unless a client asks for low latency.
parec --latency-msec=10 -d earshot.monitor >/dev/null 2>&1 & PIDS+=("$!")
if [ -n "$TONE" ]; then
  command -v sox >/dev/null || { echo "sox not found: apt-get install -y sox" >&2; exit 2; }
  sox -n -r 48000 -c 2 -b 16 "$RUN/tone.wav" synth 600 sine "$TONE" vol 0.5
  PLAY+=("$RUN/tone.wav")
fi
for f in "${PLAY[@]}"; do
  (while paplay --device=earshot "$f"; do :; done) >/dev/null 2>&1 & PIDS+=("$!")
done
echo "private PulseAudio: PULSE_SERVER=$PULSE_SERVER (capture device alsa:pulse)" >&2
sleep 0.5
"$@"
