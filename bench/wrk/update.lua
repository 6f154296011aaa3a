-- wrk script: FHIR update (PUT /fhir/Patient/{id}, no If-Match), rotating over seeded ids.
-- Usage: wrk -s update.lua http://127.0.0.1:PORT -- ids.txt patient-template.json
-- The template holds the body with the id written as @ID@ (PUT needs id == URL id).
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local ids, n, requests

function init(args)
   ids = load_ids(args[1])
   local template = read_file(args[2])
   local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json"}
   -- Pre-format every request once: the client must not be what limits the server.
   requests = {}
   for i, rid in ipairs(ids) do
      local body = template:gsub("@ID@", rid)
      requests[i] = wrk.format("PUT", "/fhir/Patient/" .. rid, headers, body)
   end
   n = (id or 0) * 7919
end

function request()
   n = n + 1
   return requests[(n % #requests) + 1]
end
