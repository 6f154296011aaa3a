-- wrk script: the bench-only fixed-body route (bench/ceiling.py), the read's ceiling.
-- Usage: wrk -s ceiling.lua http://127.0.0.1:PORT
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local req

function init(args)
   req = wrk.format("GET", "/bench/ceiling", {["Accept"] = "application/fhir+json"})
end

function request()
   return req
end
