-- PATCH /api/v1/orders/<random id> with {"note":"bench <thread>-<random>"}
-- (Content-Type: application/json). Every request changes the note, so every
-- request is a write: new version + one event row, in one transaction, on both
-- servers. Used by rest.sh; prints one BENCH line in done() like get.lua.
local count = tonumber(os.getenv("BENCH_ORDERS") or "10000")
local n = 0

function setup(thread)
  n = n + 1
  thread:set("tid", n)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  local path = string.format("/api/v1/orders/ord_%05d", math.random(1, count))
  local body = string.format('{"note":"bench %d-%d"}', tid, math.random(1, 1000000000))
  return wrk.format("PATCH", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
