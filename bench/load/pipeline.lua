-- wrk script: every connection sends DEPTH requests for "/" in one write and
-- waits for their DEPTH responses before sending the next batch (HTTP/1.1
-- pipelining). wrk counts each response as one request.
--
--   wrk -t1 -c50 -d5s -s bench/load/pipeline.lua http://127.0.0.1:8000/ -- 16

init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, "/")
  end
  req = table.concat(r)
end

request = function()
  return req
end
