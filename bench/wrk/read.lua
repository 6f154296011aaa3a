-- wrk script: FHIR read by id, rotating over the seeded Patient ids.
-- Usage: wrk -s read.lua http://127.0.0.1:PORT -- ids.txt
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local n, requests

function init(args)
   local headers = {["Accept"] = "application/fhir+json"}
   -- Pre-format every request once, as ceiling.lua does, so the client cost is the same.
   requests = {}
   for i, rid in ipairs(load_ids(args[1])) do
      requests[i] = wrk.format("GET", "/fhir/Patient/" .. rid, headers)
   end
   -- Threads start at different offsets so they do not read the same rows in lock step.
   n = (id or 0) * 7919
end

function request()
   n = n + 1
   return requests[(n % #requests) + 1]
end
