-- DEPTH requests written back to back on each connection before any response is read. wrk
-- counts each response, and writes the next batch once all DEPTH have arrived.
local depth = 16
local batch

init = function(args)
  local reqs = {}
  for i = 1, depth do
    reqs[i] = wrk.format(nil, wrk.path)
  end
  batch = table.concat(reqs)
end

request = function()
  return batch
end
