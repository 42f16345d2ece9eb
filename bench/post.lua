-- wrk script: POST one fixed body (a file) and print a machine-readable summary line.
-- Environment: BENCH_BODY (path of the body), BENCH_CTYPE (Content-Type),
-- BENCH_IHCL (optional Inference-Header-Content-Length of the binary tensor extension),
-- BENCH_TRACEPARENT (optional W3C traceparent header, bench/trace_cost.py).
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/json"
-- BENCH_CLOSE=1: "Connection: close", so that every request opens a new connection.
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end
local ihcl = os.getenv("BENCH_IHCL")
if ihcl and ihcl ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = ihcl
end
local traceparent = os.getenv("BENCH_TRACEPARENT")
if traceparent and traceparent ~= "" then
  wrk.headers["traceparent"] = traceparent
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status,
    e.timeout))
end
