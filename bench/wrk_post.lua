-- wrk script: POST pre-signed GHL webhooks, each body once, then stop.
-- usage: wrk -tT -cC -dD --latency -s bench/wrk_post.lua URL -- BODIES_FILE N T DONE_FILE
-- BODIES_FILE has one "signature<TAB>json body" line per webhook. Thread k of T sends the lines
-- k, k+T, k+2T, ... and stops once it has N/T answers, then creates DONE_FILE (wrk itself sleeps
-- out -d: the caller sends it SIGINT on seeing the file), or when -d runs out first. The elapsed
-- time is measured here, from the first request to the last answer (CLOCK_MONOTONIC). The final line is machine readable
-- ("WRKJSON {...}"), with latency percentiles in microseconds and the answers by status code.

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local function now_us()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local sigs, bodies, count, limit, sent, answered = {}, {}, 0, 0, 0, 0
local done_file = nil
codes = {}
first_us, last_us = 0, 0

function init(args)
  local total = tonumber(args[2]) or 0
  local nthreads = tonumber(args[3]) or 1
  done_file = args[4]
  local index = 0
  for line in io.lines(args[1]) do
    if index % nthreads == tid then
      local tab = line:find("\t", 1, true)
      count = count + 1
      sigs[count] = line:sub(1, tab - 1)
      bodies[count] = line:sub(tab + 1)
    end
    index = index + 1
  end
  if total > 0 then limit = math.floor(total / nthreads) else limit = count end
  if limit > count then limit = count end
end

function request()
  sent = sent + 1
  if sent == 1 then first_us = now_us() end
  local k = ((sent - 1) % count) + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-GHL-Signature"] = sigs[k],
  }, bodies[k])
end

function response(status, headers, body)
  answered = answered + 1
  last_us = now_us()
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
  if answered == limit then
    wrk.thread:stop()
    if done_file then
      local f = io.open(done_file .. "." .. tid, "w")
      f:write("done\n")
      f:close()
    end
  end
end

function done(summary, latency, requests)
  local merged = {}
  local first, last = nil, 0
  for _, thread in ipairs(threads) do
    local f, l = thread:get("first_us"), thread:get("last_us")
    if f and f > 0 and (first == nil or f < first) then first = f end
    if l and l > last then last = l end
    local c = thread:get("codes")
    if c then
      for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"wrk_duration_us":%d,"elapsed_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"codes":{%s}}\n',
    summary.requests, summary.duration, (last > 0 and first) and (last - first) or 0, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, table.concat(parts, ",")))
end
