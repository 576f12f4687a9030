-- wrk script for bench/over_http.py. Settings come from the environment:
--   BENCH_AUTH  the Authorization header value
--   BENCH_MODE  "get" (the URL as is) or "post-member" (a new address in every request)
--   BENCH_RUN   a tag that keeps the addresses of separate runs apart
-- done() prints one line "WRK_JSON {...}" with the counts and the latency percentiles.

local auth = os.getenv("BENCH_AUTH")
local mode = os.getenv("BENCH_MODE") or "get"
local run = os.getenv("BENCH_RUN") or "0"

wrk.headers["Authorization"] = auth
if mode == "post-member" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local sent = 0
function request()
  if mode ~= "post-member" then
    return wrk.request()
  end
  sent = sent + 1
  local body = string.format(
    '{"email_address":"r%s-t%d-%d@example.org","status":"subscribed"}', run, tid, sent)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
