-- wrk script for benches/load.sh: POSTs varied Z-API PresenceChatCallback
-- webhooks to /webhooks/zapi/presence. The bridge and the ceiling get the very
-- same request sequence (fixed seeds per wrk thread).
--
-- Configured through the environment (wrk passes it to every Lua state):
--   LOAD_MODE    saturate (default) | paced | budget
--   LOAD_RATE    paced: total requests/s over all threads
--   LOAD_BUDGET  budget: total 2xx answers wanted over all threads; each
--                thread stops once it has its share (the -d duration bounds it)
--   LOAD_THREADS the -t given to wrk (to split LOAD_RATE / LOAD_BUDGET)
--   LOAD_PHONES  distinct phones (default 5000)
--   LOAD_PATH    request path (default /webhooks/zapi/presence)
--   LOAD_SEED    base seed (default 1)
--
-- done() prints one line "LOADJSON {...}" with requests, duration, rate,
-- error counts and latency percentiles (microseconds), for load.sh to parse.
-- Non-2xx: wrk itself counts every answer with status > 399
-- (summary.errors.status) without a response() callback, which would cost
-- wrk CPU on every answer; in budget mode response() exists anyway (to count
-- 2xx answers and stop) and counts anything outside 200..299 exactly.

local mode    = os.getenv("LOAD_MODE") or "saturate"
local rate    = tonumber(os.getenv("LOAD_RATE") or "0") or 0
local budget  = tonumber(os.getenv("LOAD_BUDGET") or "0") or 0
local nthr    = tonumber(os.getenv("LOAD_THREADS") or "1") or 1
local nphones = tonumber(os.getenv("LOAD_PHONES") or "5000") or 5000
local path    = os.getenv("LOAD_PATH") or "/webhooks/zapi/presence"
local seed    = tonumber(os.getenv("LOAD_SEED") or "1") or 1

-- ------------------------------------------------------------ main state
local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

-- ------------------------------------------------------------ thread state
local STATUSES = { "UNAVAILABLE", "AVAILABLE", "COMPOSING", "PAUSED", "RECORDING" }
local POOL = 5000          -- pre-formatted requests per thread, cycled
local pool = {}
local idx = 0
ok_count, bad_count = 0, 0 -- globals: read from the main state with thread:get
local my_budget = 0

local function cap(s) return s:sub(1, 1) .. s:sub(2):lower() end

local function status_variant(i)
   local s = STATUSES[math.random(1, 5)]
   local r = math.random(1, 16)
   if r == 1 then return s:lower() end      -- "composing"
   if r == 2 then return cap(s) end         -- "Composing"
   return s
end

local function phone_variant(k)
   -- 5,000 Brazilian mobile numbers, sometimes formatted the way people type them
   local digits = string.format("55119%08d", k)
   local r = math.random(1, 20)
   if r == 1 then
      return string.format("+55 (11) 9%s-%s", digits:sub(6, 9), digits:sub(10, 13))
   elseif r == 2 then
      return digits .. "@s.whatsapp.net"
   elseif r == 3 then
      return string.format("1203630%011d-group", k)  -- a group
   end
   return digits
end

local function last_seen_variant()
   local r = math.random(1, 12)
   if r <= 4 then return "null" end
   if r <= 7 then return tostring(1700000000000 + math.random(0, 99999999)) end -- epoch ms
   if r <= 9 then return tostring(1700000000 + math.random(0, 9999999)) end     -- epoch s
   if r == 10 then
      return string.format('"2023-11-%02dT%02d:%02d:%02dZ"', math.random(1, 28),
         math.random(0, 23), math.random(0, 59), math.random(0, 59))
   end
   if r == 11 then
      return string.format('"2023-11-%02dT%02d:%02d:%02d.%03d-03:00"', math.random(1, 28),
         math.random(0, 23), math.random(0, 59), math.random(0, 59), math.random(0, 999))
   end
   return nil -- field absent
end

function init(args)
   local id = tid or 1
   math.randomseed(seed * 1000 + id)
   local headers = { ["Content-Type"] = "application/json" }
   for i = 1, POOL do
      local k = ((i - 1) * 7 + id * 2503) % nphones
      local ls = last_seen_variant()
      local body
      if ls == nil then
         body = string.format(
            '{"type":"PresenceChatCallback","phone":"%s","status":"%s","instanceId":"3C0A1B2C3D4E5F%02d"}',
            phone_variant(k), status_variant(i), k % 8)
      else
         body = string.format(
            '{"type":"PresenceChatCallback","phone":"%s","status":"%s","lastSeen":%s,"instanceId":"3C0A1B2C3D4E5F%02d"}',
            phone_variant(k), status_variant(i), ls, k % 8)
      end
      pool[i] = wrk.format("POST", path, headers, body)
   end
   if mode == "budget" then
      my_budget = math.ceil(budget / nthr)
   end
end

function request()
   idx = idx + 1
   if idx > POOL then idx = 1 end
   return pool[idx]
end

if mode == "budget" then
   function response(status, headers, body)
      if status >= 200 and status < 300 then
         ok_count = ok_count + 1
         if ok_count >= my_budget then wrk.thread:stop() end
      else
         bad_count = bad_count + 1
      end
   end
end

if mode == "paced" then
   -- Open-loop-ish pacing: each thread hands out send slots 1/(rate/threads)
   -- apart; delay() returns the wait until this request's slot (wrk wants
   -- whole milliseconds; the schedule keeps the average rate exact).
   local ffi = require("ffi")
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } loadbench_ts;
      int clock_gettime(int clk, loadbench_ts *ts);
   ]]
   local ts = ffi.new("loadbench_ts")
   local function now()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
   end
   local interval = (rate > 0) and (nthr / rate) or 0
   local next_t = nil
   function delay()
      local t = now()
      if next_t == nil or next_t < t - 0.05 then next_t = t end -- no catch-up bursts
      local d = next_t - t
      next_t = next_t + interval
      return d * 1000
   end
end

function done(summary, latency, requests)
   local ok, bad = 0, 0
   for _, t in ipairs(threads) do
      ok = ok + (tonumber(t:get("ok_count")) or 0)
      bad = bad + (tonumber(t:get("bad_count")) or 0)
   end
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      'LOADJSON {"mode":"%s","requests":%d,"duration_s":%.3f,"rps":%.1f,' ..
      '"non2xx":%d,"connect_err":%d,"read_err":%d,"write_err":%d,"timeouts":%d,' ..
      '"budget_ok":%d,"budget_bad":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      mode, summary.requests, secs, summary.requests / secs,
      (mode == "budget") and bad or e.status, e.connect, e.read, e.write, e.timeout,
      ok, bad,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
