-- Shared by the wrk scripts of bench/crud.py: counts non-2xx answers per thread and, when wrk
-- finishes, prints one line "BENCH_JSON {...}" with throughput, latency percentiles and errors.
-- Loaded with dofile() by read.lua, create.lua, update.lua and ceiling.lua.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

non2xx = 0

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

-- Ids to rotate over, one a line, from the file named by the script's first argument.
function load_ids(path)
   local ids = {}
   local f = assert(io.open(path, "r"), "cannot open ids file " .. tostring(path))
   for line in f:lines() do
      if #line > 0 then table.insert(ids, line) end
   end
   f:close()
   assert(#ids > 0, "no ids in " .. path)
   return ids
end

function read_file(path)
   local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
   local data = f:read("*a")
   f:close()
   return data
end

function done(summary, latency, requests)
   local bad = 0
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
   end
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"seconds":%.6f,"rps":%.2f,"p50_ms":%.3f,"p90_ms":%.3f,'
      .. '"p99_ms":%.3f,"max_ms":%.3f,"non2xx":%d,"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d}\n',
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, bad,
      e.connect, e.read, e.write, e.status, e.timeout))
end
