-- GET /api/v1/orders/<random id among ord_00001..ord_<BENCH_ORDERS>>
-- Used by rest.sh against both servers. Prints one machine-readable BENCH line
-- in done() (exact percentiles in microseconds) besides wrk's normal report.
local count = tonumber(os.getenv("BENCH_ORDERS") or "10000")
local n = 0

function setup(thread)
  n = n + 1
  thread:set("tid", n)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  return wrk.format("GET", string.format("/api/v1/orders/ord_%05d", math.random(1, count)))
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
