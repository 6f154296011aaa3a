-- wrk script: FHIR create (POST /fhir/Patient) with the sample Patient body.
-- Usage: wrk -s create.lua http://127.0.0.1:PORT -- patient.json
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local req

function init(args)
   local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json"}
   req = wrk.format("POST", "/fhir/Patient", headers, read_file(args[1]))
end

function request()
   return req
end
