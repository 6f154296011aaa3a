-- wrk script: GET each path of a file in turn (one a line), with a bearer token from
-- BENCH_TOKEN when it is set. Usage: wrk -s paths.lua http://127.0.0.1:PORT -- paths.txt
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local n, requests

function init(args)
   local headers = {["Accept"] = "application/fhir+json"}
   local token = os.getenv("BENCH_TOKEN")
   if token and #token > 0 then
      headers["Authorization"] = "Bearer " .. token
   end
   requests = {}
   for i, path in ipairs(load_ids(args[1])) do
      requests[i] = wrk.format("GET", path, headers)
   end
   n = (id or 0) * 7919
end

function request()
   n = n + 1
   return requests[(n % #requests) + 1]
end
